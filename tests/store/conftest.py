"""Fixtures of the store tests; their scenarios are in store_scenarios.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_scenarios import FIVE_FIXED_SETUPS, GATE_SETUPS, scenario_yaml


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "results.duckdb"


@pytest.fixture(scope="session")
def jax_cache_dir(tmp_path_factory) -> Path:
    """One persistent JAX compilation cache for every `rtcbench run` of this session: the suite's shared
    folder (tests/conftest.py) when tests/run.sh set it, else a temporary one."""
    from suite_cache import shared_jax_cache  # tests/suite_cache.py (tests/ is on sys.path)

    return shared_jax_cache() or tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="session")
def tiny_scenarios(tmp_path_factory) -> Path:
    """Scenario files on the shipped policy of s/h8_unicycle_balance (policies/ in the repository)."""
    folder = tmp_path_factory.mktemp("scenarios")
    (folder / "gate.yaml").write_text(scenario_yaml("store_gate", GATE_SETUPS))
    (folder / "five_setups.yaml").write_text(scenario_yaml("store_five_setups", FIVE_FIXED_SETUPS))
    return folder
