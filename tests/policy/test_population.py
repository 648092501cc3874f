"""The multi-expert pipeline on the tiny session pipeline (conftest.py): expert populations, the data
mixture's labels, and modality recorded in BC sidecars. Real Kinetix physics and real training, tiny sizes."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np

from rtcbench.policy.checkpoint import load_policy
from tests.policy.conftest import TINY_LEVEL, run_cli


def _params(expert_dir):
    from rtcbench.levels import load_level
    from rtcbench.policy.expert import load_expert

    cfg, params, *_ = load_expert(expert_dir, load_level(TINY_LEVEL))
    return cfg, params


def test_population_layout_and_checkpoints(tiny_pipeline):
    experts = tiny_pipeline["experts"]
    assert sorted(p.name for p in experts.iterdir()) == ["seed_0", "seed_1"]
    for seed in (0, 1):
        meta = json.loads((experts / f"seed_{seed}" / "expert.json").read_text())
        assert meta["config"]["seed"] == seed and meta["population"]["seeds"] == [0, 1]
        assert meta["trained_steps"] == 512 and meta["solve_rate"]["n"] == 64
        (ckpt,) = meta["checkpoints"]  # --checkpoint-every past the end: only the final one
        assert ckpt["steps"] == 512 and 0.0 <= ckpt["train_solve_frac"] <= 1.0
        assert (experts / f"seed_{seed}" / ckpt["file"]).is_file()
    (_, p0), (_, p1) = _params(experts / "seed_0"), _params(experts / "seed_1")
    assert not np.allclose(p0["actor"][0]["w"], p1["actor"][0]["w"])


def test_a_vmapped_seed_trains_as_it_would_alone(tiny_pipeline, tmp_path):
    rc = run_cli("policy", "train-expert", "--level", TINY_LEVEL, "--out", str(tmp_path / "alone"), "--steps", "512",
                 "--num-envs", "16", "--num-steps", "16", "--eval-n", "64", "--seed", "1",
                 "--checkpoint-every", "100000")
    assert rc == 0
    _, alone = _params(tmp_path / "alone")
    _, vmapped = _params(tiny_pipeline["experts"] / "seed_1")
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(vmapped), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-4)


def test_sampled_labels_carry_the_experts_spread(tiny_pipeline, tmp_path):
    """Labels drawn from one expert's clip(N(mean, std)): the residual label - mean is centred and its median
    absolute value is 0.6745 std where clipping cannot reach it; mean labels have no residual at all."""
    from rtcbench.policy.collect import load_dataset
    from rtcbench.policy.expert import actor_mean

    expert = tiny_pipeline["expert"]
    cfg, params = _params(expert)
    std = np.exp(np.asarray(params["log_std"]))  # [A]
    residuals = {}
    for label in ("sample", "mean"):
        out = tmp_path / label
        rc = run_cli("policy", "collect", "--expert", str(expert), "--out", str(out), "--episodes", "64",
                     "--n-envs", "16", "--max-steps", "96", "--seed", "3", "--min-train-solve", "0",
                     "--allow-single", "--label", label)
        assert rc == 0
        obs, chunks, meta = load_dataset(out)
        assert meta["label"] == label and meta["n_experts"] == 1
        mean = np.asarray(actor_mean(params, obs))  # [M, A]: obs_history 1, so the input is the observation
        residuals[label] = (chunks[:, 0] - np.clip(mean, -1, 1), mean)
    r, _ = residuals["mean"]
    assert np.abs(r).max() < 1e-5
    r, mean = residuals["sample"]
    inner = np.abs(mean) < 0.3  # far enough from the clip at +-1 that |r| < 0.7 is never clipped
    assert inner.sum() > 1000
    z = np.abs(r) / std[None, :]
    assert 0.85 < np.median(z[inner]) / 0.6745 < 1.15
    assert 0.45 < np.mean(r[inner] > 0) < 0.55


def test_bc_sidecar_records_data_and_modality(tiny_pipeline, tmp_path, capsys):
    meta = load_policy(tiny_pipeline["bc"]).meta
    assert meta["data"] == {"n_experts": 2, "label": "sample", "keep": "all",
                            "samples": tiny_pipeline["data_meta"]["samples"]}
    mod = meta["modality"]
    assert mod["n_obs"] == 16 and mod["m"] == 16 and mod["boundary_s"] == 4
    for key in ("stochasticity", "sign_disagreement", "boundary_disagreement", "bimodal_share", "median_bic_gain"):
        lo, hi = mod[key]["ci95"]
        assert lo <= mod[key]["value"] <= hi
    assert "spread" not in mod and mod["stochasticity"]["value"] >= 0 and mod["boundary_disagreement"]["value"] >= 0
    assert 0 <= mod["sign_disagreement"]["value"] <= 1 and 0 <= mod["bimodal_share"]["value"] <= 1
    assert mod["bimodal_bic_margin"] == 10
    # `policy modality --record` rewrites the sidecar only; the weights and their hash stay valid
    copy = tmp_path / "bc"
    for ext in (".msgpack", ".json"):
        shutil.copy(tiny_pipeline["bc"].with_suffix(ext), copy.with_suffix(ext))
    capsys.readouterr()
    rc = run_cli("policy", "modality", "--policy", str(copy), "--n-obs", "8", "--m", "4", "--record")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["n_obs"] == 8 and out["data"]["n_experts"] == 2 and "bimodal_share" in out
    reloaded = load_policy(copy)
    assert reloaded.sha256 == load_policy(tiny_pipeline["bc"]).sha256
    assert reloaded.meta["modality"]["n_obs"] == 8 and reloaded.meta["modality"]["m"] == 4
    assert {"stochasticity", "bimodal_share", "median_bic_gain"} <= set(reloaded.meta["modality"])
    assert run_cli("policy", "modality", "--policy", str(copy), "--n-obs", "1") == 2
    assert run_cli("policy", "modality", "--policy", str(copy), "--boundary-s", "8") == 2
