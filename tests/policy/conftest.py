"""Session fixtures for the policy tests: one tiny end-to-end pipeline run, shared by every test.

The pipeline runs the real CLI in-process on a size-s level with real Kinetix physics and real
training at tiny sizes: train-expert (2 PPO updates of 16 envs x 16 steps), collect, train-bc,
train-ttrtc, each evaluated on 64 closed-loop rollouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_LEVEL = "s/h8_unicycle_balance"
REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> int:
    from rtcbench.cli.main import main

    return main(list(args))


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    expert, data = root / "expert", root / "data"
    bc, ttrtc = root / "policies" / "bc", root / "policies" / "ttrtc"
    rc = run_cli("policy", "train-expert", "--level", TINY_LEVEL, "--out", str(expert), "--steps", "512",
                 "--num-envs", "16", "--num-steps", "16", "--eval-n", "64", "--seed", "0")
    assert rc == 0, "train-expert failed"
    rc = run_cli("policy", "collect", "--expert", str(expert), "--out", str(data), "--n-envs", "16",
                 "--steps", "96", "--seed", "1")
    assert rc == 0, "collect failed"
    rc = run_cli("policy", "train-bc", "--data", str(data), "--out", str(bc), "--work", str(root / "work_bc"),
                 "--epochs", "2", "--batch-size", "64", "--eval-n", "64", "--eval-delay", "0")
    assert rc == 0, "train-bc failed"
    rc = run_cli("policy", "train-ttrtc", "--bc", str(bc), "--data", str(data), "--out", str(ttrtc),
                 "--work", str(root / "work_ttrtc"), "--epochs", "1", "--eval-n", "64", "--eval-delay", "0")
    assert rc == 0, "train-ttrtc failed"
    return {"root": root, "expert": expert, "data": data, "bc": bc, "ttrtc": ttrtc,
            "data_meta": json.loads((data / "data.json").read_text())}
