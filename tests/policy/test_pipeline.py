"""The tiny end-to-end pipeline (see conftest.py) and the refusals of the pipeline commands."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.policy.checkpoint import load_policy
from tests.policy.conftest import TINY_LEVEL, run_cli


def test_pipeline_produces_checkpoints_that_load(tiny_pipeline):
    from rtcbench.levels import load_level

    level = load_level(TINY_LEVEL)
    data_meta = tiny_pipeline["data_meta"]
    assert data_meta["samples"] > 0 and data_meta["n_experts"] == 2 and data_meta["episodes"] == 48
    assert (data_meta["label"], data_meta["keep"], data_meta["min_train_solve_frac"]) == ("sample", "all", 0.0)
    assert [e["seed"] for e in data_meta["experts"]] == [0, 1]
    assert sum(e["episodes"] for e in data_meta["experts"]) == 48
    assert abs(sum(e["share"] for e in data_meta["experts"]) - 1.0) < 1e-9
    assert sum(e["samples"] for e in data_meta["experts"]) == data_meta["samples"]
    # the recorded command re-runs as written: off flags are left out, not written as "--allow-single False"
    assert "--allow-single" not in data_meta["command"] and "False" not in data_meta["command"]
    for kind in ("bc", "ttrtc"):
        loaded = load_policy(tiny_pipeline[kind], level=level)
        assert loaded.kind == kind
        meta = loaded.meta
        assert (meta["obs_dim"], meta["action_dim"], meta["H"]) == (level.obs_dim, level.action_dim, 8)
        assert meta["level"] == TINY_LEVEL and meta["preset"] == "cpu"
        solve = meta["solve_rate"]
        assert solve["n"] == 64 and 0 <= solve["solved"] <= 64
        lo, hi = solve["wilson95"]
        assert lo <= solve["rate"] <= hi
        assert "train-" + kind in meta["training"][kind]["command"]
        chunk = loaded.model().sample(jax.random.PRNGKey(0), jnp.zeros((2, level.obs_dim)), 5)
        assert chunk.shape == (2, 8, level.action_dim) and bool(jnp.isfinite(chunk).all())
    ttrtc = load_policy(tiny_pipeline["ttrtc"])
    assert ttrtc.meta["training"]["ttrtc"]["init_sha256"] == load_policy(tiny_pipeline["bc"]).sha256
    assert ttrtc.meta["training"]["ttrtc"]["config"]["max_prefix"] == 4


def test_training_writes_its_metrics_as_json_lines_and_draws_curves(tiny_pipeline, tmp_path, capsys):
    from rtcbench.policy.curves import read_metrics

    root = tiny_pipeline["root"]
    for seed in (0, 1):  # expert: one line per block, the same records as the sidecar's history
        expert_dir = tiny_pipeline["experts"] / f"seed_{seed}"
        history = json.loads((expert_dir / "expert.json").read_text())["history"]
        lines = read_metrics(expert_dir / "metrics.jsonl")
        assert lines == [{"stage": "expert", "seed": seed, **r} for r in history] and len(lines) >= 1
        assert (expert_dir / "curves.png").stat().st_size > 0 and (expert_dir / "curves.svg").stat().st_size > 0
    for stage, work, epochs in (("bc", "work_bc", 2), ("ttrtc", "work_ttrtc", 1)):
        lines = read_metrics(root / work / f"{stage}_metrics.jsonl")
        assert [r["epoch"] for r in lines] == list(range(1, epochs + 1)) and {r["stage"] for r in lines} == {stage}
        assert lines == [{"stage": stage, **r} for r in load_policy(tiny_pipeline[stage]).meta["training"][stage]["history"]]
        assert (root / work / f"{stage}_curves.png").stat().st_size > 0
    code = run_cli("policy", "curves", str(tiny_pipeline["ttrtc"]) + ".json", "--out", str(tmp_path / "c"))
    assert code == 0 and len(list((tmp_path / "c").glob("*.png"))) == 1
    assert run_cli("policy", "curves", str(tmp_path / "missing.json"), "--out", str(tmp_path / "c")) == 2


def test_training_resumes_from_its_state(tiny_pipeline, capsys):
    # Training state after the last epoch exists, so a rerun resumes and does no new epoch.
    state = json.loads((tiny_pipeline["root"] / "work_bc" / "bc_train.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_collect_refuses_weak_or_single_experts(tiny_pipeline, tmp_path, capsys):
    # the tiny experts' training solve rates are far below the reference's 0.65
    capsys.readouterr()
    rc = run_cli("policy", "collect", "--expert", str(tiny_pipeline["experts"]), "--out", str(tmp_path / "data"))
    err = capsys.readouterr().err
    assert rc == 2 and "0.65" in err and "seed_0" in err and "--expert" in err
    # one qualifying seed is refused unless --allow-single says a single expert is meant
    rc = run_cli("policy", "collect", "--expert", str(tiny_pipeline["expert"]), "--out", str(tmp_path / "data"),
                 "--min-train-solve", "0")
    err = capsys.readouterr().err
    assert rc == 2 and "--allow-single" in err and "only 1 expert seed" in err
    assert not (tmp_path / "data").exists()
    rc = run_cli("policy", "collect", "--expert", str(tiny_pipeline["expert"]), "--expert",
                 str(tiny_pipeline["expert"]), "--out", str(tmp_path / "data"), "--min-train-solve", "0")
    assert rc == 2 and "twice" in capsys.readouterr().err
    rc = run_cli("policy", "collect", "--expert", str(tiny_pipeline["experts"]), "--out", str(tmp_path / "data"),
                 "--min-train-solve", "0", "--label", "mode")
    assert rc == 2 and "sample" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_eval_reports_wilson_interval(tiny_pipeline, capsys):
    rc = run_cli("policy", "eval", "--policy", str(tiny_pipeline["bc"]), "--n", "64", "--seed", "7")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["n"] == 64 and out["delay"] == 0 and out["level"] == TINY_LEVEL
    assert out["wilson95"][0] <= out["rate"] <= out["wilson95"][1]


def test_eval_expert_on_stale_observations(tiny_pipeline, capsys):
    capsys.readouterr()
    rc = run_cli("policy", "eval-expert", "--expert", str(tiny_pipeline["expert"]), "--obs-lag", "0",
                 "--obs-lag", "3", "--n", "16")
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rc == 0 and [r["obs_lag"] for r in rows] == [0, 3]
    assert all(r["n"] == 16 and r["level"] == TINY_LEVEL and 0 <= r["rate"] <= 1 for r in rows)
    assert all(len(r["action_reversal_rate"]) == len(r["action_delta_abs_mean"]) >= 1 for r in rows)
    assert all(0 <= x <= 1 for r in rows for x in r["action_reversal_rate"])
    assert run_cli("policy", "eval-expert", "--expert", str(tiny_pipeline["expert"]), "--obs-lag", "-1") == 2
    assert run_cli("policy", "eval-expert", "--expert", str(tiny_pipeline["root"] / "nope")) == 2


def test_bad_eval_arguments_are_user_errors(tiny_pipeline, capsys):
    rc = run_cli("policy", "eval", "--policy", str(tiny_pipeline["bc"]), "--delay", "5", "--horizon", "4")
    assert rc == 2 and "horizon + delay" in capsys.readouterr().err
    # size-s levels share their dims; a size-m level has more entities, so its observation differs
    rc = run_cli("policy", "eval", "--policy", str(tiny_pipeline["bc"]), "--level", "m/h4_thrust_the_needle")
    assert rc == 2 and "dims do not match" in capsys.readouterr().err


def test_gpu_request_without_gpu_fails_loudly(tiny_pipeline, capsys):
    if jax.devices()[0].platform == "gpu":
        return
    rc = run_cli("policy", "eval", "--policy", str(tiny_pipeline["bc"]), "--device", "gpu")
    err = capsys.readouterr().err
    assert rc == 2 and "no GPU" in err


def test_ttrtc_sampling_keeps_the_clean_prefix(tiny_pipeline):
    from rtcbench.policy.ttrtc import sample_with_prefix

    model = load_policy(tiny_pipeline["ttrtc"]).model()
    B, H, A = 3, model.cfg.H, model.cfg.action_dim
    prefix = jax.random.uniform(jax.random.PRNGKey(1), (B, H, A), minval=-1, maxval=1)
    d = jnp.array([0, 2, 4])
    out = sample_with_prefix(model, jax.random.PRNGKey(2), jnp.zeros((B, model.cfg.obs_dim)), prefix, d, 5)
    for b in range(B):
        np.testing.assert_array_equal(out[b, : int(d[b])], prefix[b, : int(d[b])])
    assert not np.allclose(out[0, :2], prefix[0, :2])  # d = 0: nothing is frozen



def test_expert_stops_at_its_time_limit(tmp_path):
    """--max-minutes stops after the block that crosses it; the checkpoint and the sidecar say so."""
    out = tmp_path / "expert"
    assert run_cli("policy", "train-expert", "--level", TINY_LEVEL, "--out", str(out), "--steps", "4096",
                   "--num-envs", "16", "--num-steps", "16", "--eval-n", "8", "--max-minutes", "0.0001") == 0
    meta = json.loads((out / "expert.json").read_text())
    # one block of 4 updates of 16 x 16 steps, far short of the 16 updates asked for
    assert meta["stopped_at_time_limit"] and meta["update"] == 4 and meta["trained_steps"] == 4 * 16 * 16
    assert meta["solve_rate"]["n"] == 8


def test_action_rate_penalty_lowers_the_shaped_reward(tmp_path):
    """One PPO update: its rollout (same seed, same initial weights) is identical with and without the
    penalty, so the shaped reward differs by the penalty paid alone."""
    args = ("--level", TINY_LEVEL, "--steps", "256", "--num-envs", "16", "--num-steps", "16", "--eval-n", "8",
            "--seed", "3")
    assert run_cli("policy", "train-expert", "--out", str(tmp_path / "plain"), *args) == 0
    assert run_cli("policy", "train-expert", "--out", str(tmp_path / "pen"), *args, "--action-rate-penalty", "5") == 0
    plain = json.loads((tmp_path / "plain" / "expert.json").read_text())
    pen = json.loads((tmp_path / "pen" / "expert.json").read_text())
    assert pen["config"]["action_rate_penalty"] == 5.0 and plain["config"]["action_rate_penalty"] == 0.0
    assert plain["update"] == pen["update"] == 1
    assert plain["history"][0]["episodes"] == pen["history"][0]["episodes"]
    assert pen["history"][0]["reward"] < plain["history"][0]["reward"]
    assert run_cli("policy", "train-expert", "--out", str(tmp_path / "bad"), *args, "--action-rate-penalty",
                   "-1") == 2
