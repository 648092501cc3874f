"""`rtcbench bench`: the engine against the limit of this machine (physics alone + bare policy calls)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtcbench.cli.main import main

POLICY = Path(__file__).resolve().parents[2] / "policies" / "s_h8_unicycle_balance" / "bc.msgpack"


@pytest.mark.slow
@pytest.mark.heavy
def test_bench_reports_engine_and_limit(capsys):
    capsys.readouterr()
    rc = main(["bench", "--policy", str(POLICY), "--batch", "8", "--steps", "16", "--repeats", "1",
               "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    row = json.loads(out.strip().splitlines()[-1])
    assert row["level"] == "s/h8_unicycle_balance" and row["weights"].startswith("checkpoint ")
    assert (row["B"], row["T"], row["method"]) == (8, 16, "naive")
    from rtcbench import __version__

    assert row["rtcbench_version"] == __version__ and row["timestamp"][:2] == "20" and "git_commit" in row
    assert "compiling" in err  # says what it is doing before the silent minutes
    # d = 2, s_min = 4 over 16 steps: inferences start at 0 (the synchronous first chunk), 4, 8 and 12
    assert row["policy_calls"] == 4 and row["wasted_policy_evals"] == 0
    for key in ("engine_steps_per_s", "physics_only_steps_per_s", "limit_steps_per_s", "inference_ms"):
        assert row[key] > 0
    # the limit adds policy time to physics time, so it is below physics alone
    assert row["limit_steps_per_s"] < row["physics_only_steps_per_s"]
    assert row["ratio"] == pytest.approx(row["engine_steps_per_s"] / row["limit_steps_per_s"], rel=1e-2)
    # the cadence limit: the same physics and policy calls in one scan, also below physics alone
    assert 0 < row["cadence_limit_steps_per_s"] < row["physics_only_steps_per_s"]
    assert row["cadence_ratio"] == pytest.approx(row["engine_steps_per_s"] / row["cadence_limit_steps_per_s"],
                                                 rel=1e-2)


@pytest.mark.parametrize("args, message", [
    (["--preset", "cpu", "--policy", str(POLICY)], "exactly one of --policy"),
    (["--level", "s/h8_unicycle_balance"], "exactly one of --policy"),
    (["--preset", "huge", "--level", "s/h8_unicycle_balance"], "unknown preset"),
    (["--preset", "cpu", "--level", "s/h8_unicycle_balance", "--method", "magic"], "unknown method"),
    (["--preset", "cpu", "--level", "s/h8_unicycle_balance", "--s-min", "9"], "s-min must be <= H"),
    (["--preset", "cpu", "--level", "s/nope"], "field '--level'"),
    (["--preset", "cpu"], "no level"),
])
def test_bench_bad_input(capsys, args, message):
    capsys.readouterr()
    assert main(["bench", "--device", "cpu", *args]) == 2
    assert message in capsys.readouterr().err
