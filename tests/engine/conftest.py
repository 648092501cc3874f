"""Session-scoped fixtures for the engine tests: one size-s level, a random-weight policy, a jitted env
loop, and the naive episode compiled once (while counting compilations) and reused by every test.

Random weights are fine here: equivalence, stall and determinism checks do not need a trained policy.
"""

from __future__ import annotations

import logging

import jax
import pytest
from engine_helpers import LEVEL, EnvLoop, H, make_schedule, run, three_delay_setups


@pytest.fixture(scope="session")
def level():
    from rtcbench.levels import load_level

    return load_level(LEVEL)


@pytest.fixture(scope="session")
def policy(level):
    from rtcbench.policy.model import make_config, make_policy

    return make_policy(make_config("cpu", level.obs_dim, level.action_dim, H), seed=0)


@pytest.fixture(scope="session")
def env_loop(level):
    return EnvLoop(level)


class _CompileLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="session")
def naive_three_setups(level, policy):
    """Run naive through fixed / mixture / trace delay setups first, counting XLA compilations of the
    episode with jax's compile logging. Every naive test depends on this, so it sees the first compile."""
    from rtcbench.methods.config import NaiveMethod

    handler = _CompileLog()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            outs = {name: run(level, policy, NaiveMethod(), make_schedule(d))
                    for name, d in three_delay_setups().items()}
    finally:
        logger.removeHandler(handler)
    n_compiles = sum("Finished XLA compilation of jit(episode)" in m for m in handler.messages)
    return outs, n_compiles
