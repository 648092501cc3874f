"""Session fixtures for the policy tests: one tiny end-to-end pipeline run, shared by every test.

The pipeline runs the real CLI in-process on a size-s level with real Kinetix physics and real
training at tiny sizes: train-expert (two seeds vmapped, 2 PPO updates of 16 envs x 16 steps each),
collect (48 episodes from the two-seed mixture, sampled labels), train-bc (with its modality measured),
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
    experts, data = root / "experts", root / "data"
    bc, ttrtc = root / "policies" / "bc", root / "policies" / "ttrtc"
    # Two seeds side by side; one checkpoint each (the final one: --checkpoint-every is past the 512 steps).
    rc = run_cli("policy", "train-expert", "--level", TINY_LEVEL, "--out", str(experts), "--steps", "512",
                 "--seeds", "2", "--num-envs", "16", "--num-steps", "16", "--eval-n", "64", "--seed", "0",
                 "--checkpoint-every", "100000")
    assert rc == 0, "train-expert failed"
    # Tiny experts never reach the reference's 0.65 training solve rate, so the smoke test lowers the bar.
    rc = run_cli("policy", "collect", "--expert", str(experts), "--out", str(data), "--episodes", "48",
                 "--n-envs", "16", "--max-steps", "96", "--seed", "1", "--min-train-solve", "0")
    assert rc == 0, "collect failed"
    rc = run_cli("policy", "train-bc", "--data", str(data), "--out", str(bc), "--work", str(root / "work_bc"),
                 "--epochs", "2", "--batch-size", "64", "--eval-n", "64", "--eval-delay", "0", "--modality-obs", "16")
    assert rc == 0, "train-bc failed"
    rc = run_cli("policy", "train-ttrtc", "--bc", str(bc), "--data", str(data), "--out", str(ttrtc),
                 "--work", str(root / "work_ttrtc"), "--epochs", "1", "--eval-n", "64", "--eval-delay", "0")
    assert rc == 0, "train-ttrtc failed"
    return {"root": root, "experts": experts, "expert": experts / "seed_0", "data": data, "bc": bc, "ttrtc": ttrtc,
            "data_meta": json.loads((data / "data.json").read_text())}
