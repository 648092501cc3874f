"""Root fixtures of the whole suite.

One persistent JAX compilation cache for every test process (`tests/run.sh` sets
``RTCBENCH_TEST_JAX_CACHE`` to a folder keyed by the JAX version and the hash of constraints.txt): the
in-process compilations of this session and every `rtcbench` subprocess a test starts read and write it,
so a program compiled once (by this run or an earlier one on the same machine) is loaded, not compiled
again. Without the variable (a bare ``pytest``), each store-test session uses a temporary folder.
"""

from __future__ import annotations

import os

from suite_cache import shared_jax_cache


def pytest_configure(config):  # noqa: ARG001
    cache = shared_jax_cache()
    if cache is not None:
        from rtcbench.engine import compile_cache

        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)  # subprocesses (`rtcbench run`) read it too
        compile_cache.enable(cache)
