"""The suite's one persistent JAX compilation cache (see tests/conftest.py and tests/run.sh)."""

from __future__ import annotations

import os
from pathlib import Path

TEST_CACHE_ENV = "RTCBENCH_TEST_JAX_CACHE"


def shared_jax_cache() -> Path | None:
    """The folder tests/run.sh chose (keyed by the JAX version and constraints.txt), or None."""
    value = os.environ.get(TEST_CACHE_ENV)
    return Path(value) if value else None
