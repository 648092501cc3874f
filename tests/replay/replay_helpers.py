"""Shared data of the replay tests (a module with a unique name, importable from any test file here)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

LEVEL = "s/h8_unicycle_balance"

BASE_SCENARIO = {
    "schema_version": 1,
    "name": "unit",
    "description": "test scenario",
    "levels": [LEVEL],
    "policy": "policies/{level}/bc.msgpack",
    "methods": [{"kind": "naive"}, {"kind": "rtc"}],
    "setups": [
        {
            "name": "longtail",
            "profile": {
                "kind": "mixture",
                "base": {"kind": "categorical", "values": [1, 2, 3], "probs": [0.25, 0.5, 0.25]},
                "p_spike": 0.05,
                "d_spike": 6,
            },
            "forecaster": {"kind": "window_max", "b": 10, "init": 3},
            "horizon": {"kind": "adaptive", "s_min": 3},
        },
        {
            "name": "trace",
            "profile": {"kind": "trace", "path": "traces/t.json"},
            "forecaster": {"kind": "oracle"},
            "horizon": {"kind": "fixed_clock", "s": 4},
        },
    ],
    "dt_ms": 33.3,
    "H": 8,
    "flow_steps": 5,
    "rollouts": 16,
    "max_steps": 64,
    "seeds": {"delay": 1, "env": 2, "policy": 3},
    "fallback": "hold",
}

TRACE_MS = [10.0, 66.6, 33.3, 120.5, 0.0, 99.9, 250.0, 40.0, 34.0, 33.29]


def scenario_dict() -> dict:
    return copy.deepcopy(BASE_SCENARIO)


def write_scenario(folder: Path, data: dict, name: str = "scenario.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


REPO_ROOT = Path(__file__).resolve().parents[2]


def install_real_checkpoint(folder: Path) -> Path:
    """Copy the shipped LEVEL BC checkpoint (weights + sidecar) over the placeholder of `scenario_dir`, so
    that `validate`, which loads every checkpoint, passes -> the weights path."""
    import shutil

    src = REPO_ROOT / "policies" / LEVEL.replace("/", "_")
    dst = folder / "policies" / LEVEL.replace("/", "_")
    dst.mkdir(parents=True, exist_ok=True)
    for suffix in (".msgpack", ".json"):
        shutil.copyfile(src / f"bc{suffix}", dst / f"bc{suffix}")
    return dst / "bc.msgpack"
