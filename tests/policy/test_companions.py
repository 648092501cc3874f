"""The companions of a2c2 and vlash: the correction head and the vlash fine-tune (rtcbench.policy.a2c2, .vlash,
.finetune), their checkpoints, ``rtcbench policy train-a2c2 | train-vlash`` and ``rtcbench run`` of both kinds.

The end-to-end test trains a tiny head and a tiny vlash fine-tune for one epoch through the CLI on the tiny
pipeline's data and BC checkpoint (tests/policy/conftest.py), then runs a 4-rollout cell of each method
(a2c2 over rtc, and vlash) with ``rtcbench run`` and reads the rows back. It compiles two Kinetix episodes,
so it is marked heavy.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.policy.conftest import TINY_LEVEL, run_cli


def test_episode_reach_reads_boundaries_from_overlapping_chunks():
    from rtcbench.policy.collect import first_episode_chunks
    from rtcbench.policy.finetune import episode_reach

    rng = np.random.default_rng(0)
    T, Bn, H = 12, 3, 4
    actions = rng.normal(size=(T, Bn, 2)).astype(np.float32)
    done = np.zeros((T, Bn), bool)
    done[4, 0], done[6, 1], done[2, 2] = True, True, True  # episodes of 5, 7 and 3 steps
    obs = rng.normal(size=(T, Bn, 3)).astype(np.float32)
    _, chunks, _ = first_episode_chunks(obs, actions, done, done, H, "all")
    reach = episode_reach(chunks)
    expected = np.concatenate([np.arange(L)[::-1] for L in (5, 7, 3)])
    np.testing.assert_array_equal(reach, expected)


def test_staleness_covers_every_chunk_index():
    from rtcbench.policy.a2c2 import staleness

    H = 8
    for dmax in (0, 3, 7):
        t = np.asarray(staleness(jax.random.PRNGKey(dmax), 20_000, dmax, H))
        assert t.min() == 0 and t.max() == H - 1 and set(np.unique(t)) == set(range(H))


def test_vlash_widening_is_the_source_policy_and_checkpoints_round_trip(tmp_path):
    from rtcbench.errors import UserError
    from rtcbench.policy.a2c2 import A2C2Policy, HeadConfig, make_head
    from rtcbench.policy.checkpoint import load_policy, save_policy
    from rtcbench.policy.model import make_config, make_policy
    from rtcbench.policy.vlash import widen_from

    Od, A, H = 5, 2, 8
    bc = make_policy(make_config("cpu", Od, A, H), seed=1)
    bc.set_obs_stats(jnp.ones(Od), 2.0 * jnp.ones(Od))
    vl = widen_from(bc)
    assert vl.cfg.cond_dim == 2 * A + 1
    obs = jax.random.normal(jax.random.PRNGKey(0), (3, Od))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, H, A))
    tau = jnp.array([0.0, 0.5, 0.9])
    cond = jax.random.normal(jax.random.PRNGKey(2), (3, 2 * A + 1))
    np.testing.assert_array_equal(vl.velocity(obs, x, tau, cond=cond), bc.velocity(obs, x, tau))
    np.testing.assert_array_equal(vl.velocity(obs, x, tau), bc.velocity(obs, x, tau))  # cond=None: zeros
    with pytest.raises(ValueError):
        bc.velocity(obs, x, tau, cond=cond)  # an unconditioned policy takes none

    meta = {"level": TINY_LEVEL, "kind": "bc"}
    save_policy(bc, tmp_path / "bc", dict(meta))
    assert "cond_dim" not in json.loads((tmp_path / "bc.json").read_text())["config"]  # bc sidecars as before
    save_policy(vl, tmp_path / "vlash", dict(meta, kind="vlash"))
    loaded = load_policy(tmp_path / "vlash")
    assert loaded.kind == "vlash" and loaded.config.cond_dim == 2 * A + 1
    np.testing.assert_array_equal(loaded.model().velocity(obs, x, tau, cond=cond), vl.velocity(obs, x, tau, cond=cond))

    head = make_head(HeadConfig(Od, A, H, hidden=16, layers=1), seed=3)
    save_policy(A2C2Policy(bc, head), tmp_path / "a2c2", dict(meta, kind="a2c2", base_kind="bc"))
    side = json.loads((tmp_path / "a2c2.json").read_text())
    assert side["head_config"] == {"obs_dim": Od, "action_dim": A, "H": H, "hidden": 16, "layers": 1}
    model = load_policy(tmp_path / "a2c2").model()
    np.testing.assert_array_equal(model.velocity(obs, x, tau), bc.velocity(obs, x, tau))  # the base's flow
    t = jnp.array([0, 3, 7])
    np.testing.assert_array_equal(model.correction(obs, x[:, 0], t, obs), 0.0)  # the head's output starts at 0
    for bad_kind, model_ in (("vlash", bc), ("bc", vl), ("a2c2", bc)):
        with pytest.raises(ValueError):
            save_policy(model_, tmp_path / "bad", dict(meta, kind=bad_kind))
    # a conditioned network under another kind is refused on load
    (tmp_path / "vlash.json").write_text(json.dumps(dict(json.loads((tmp_path / "vlash.json").read_text()),
                                                         kind="bc")))
    with pytest.raises(UserError, match="cond_dim"):
        load_policy(tmp_path / "vlash")


def test_head_features_and_correction_wiring():
    from rtcbench.methods.a2c2 import corrected_action, head_features
    from rtcbench.policy.a2c2 import A2C2Policy, HeadConfig, make_head
    from rtcbench.policy.model import make_config, make_policy

    Od, A, H = 3, 2, 4
    base = make_policy(make_config("cpu", Od, A, H))
    base.set_obs_stats(jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 2.0, 2.0]))
    o_now, o_chunk = jnp.array([[3.0, 2.0, 1.0]]), jnp.array([[1.0, 4.0, 3.0]])
    a, t = jnp.array([[0.5, -0.5]]), jnp.array([2])
    f = head_features(base.normalize_obs(o_now), base.normalize_obs(o_chunk), a, t, H)
    np.testing.assert_array_equal(f, [[1, 0, -1, 0, 1, 0, 0.5, -0.5, 0, 0, 1, 0]])
    head = make_head(HeadConfig(Od, A, H, hidden=8, layers=2))
    head.out.bias.value = jnp.array([0.25, -0.125])
    np.testing.assert_array_equal(corrected_action(A2C2Policy(base, head), o_now, a, t, o_chunk), [[0.75, -0.625]])


def test_train_companions_then_run_both_methods(tiny_pipeline, tmp_path):
    from rtcbench.policy.checkpoint import load_policy
    from rtcbench.store import read_only

    pol = tmp_path / "policies"
    a2c2, vlash = pol / "a2c2", pol / "vlash"
    common = ("--data", str(tiny_pipeline["data"]), "--epochs", "1", "--batch-size", "64", "--dmax", "3")
    assert run_cli("policy", "train-a2c2", "--bc", str(tiny_pipeline["bc"]), *common, "--out", str(a2c2),
                   "--work", str(tmp_path / "work_a2c2"), "--hidden", "32", "--eval-n", "0") == 0
    # vlash's recorded evaluation shares its compiled episode with the scenario's vlash cell (4 rollouts, 48 steps)
    assert run_cli("policy", "train-vlash", "--bc", str(tiny_pipeline["bc"]), *common, "--out", str(vlash),
                   "--work", str(tmp_path / "work_vlash"), "--eval-n", "4", "--eval-delay", "2",
                   "--eval-horizon", "2", "--eval-max-steps", "48") == 0
    ha, hv = load_policy(a2c2), load_policy(vlash)
    bc_sha = load_policy(tiny_pipeline["bc"]).sha256
    assert ha.kind == "a2c2" and ha.meta["base_kind"] == "bc" and ha.meta["training"]["a2c2"]["init_sha256"] == bc_sha
    assert hv.kind == "vlash" and hv.config.cond_dim == 2 * hv.config.action_dim + 1
    assert hv.meta["training"]["vlash"]["dmax"] == 3 and "bc" in hv.meta["training"]
    assert hv.meta["solve_rate"]["n"] == 4 and hv.meta["solve_rate_vlash_d2_s2"]["n"] == 4
    for name in ("a2c2", "vlash"):
        lines = (tmp_path / f"work_{name}" / f"{name}_metrics.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["stage"] == name
        assert (tmp_path / f"work_{name}" / f"{name}_curves.png").exists()
    # wrong inputs are user errors: a vlash checkpoint cannot be fine-tuned again, dmax must be < H
    assert run_cli("policy", "train-vlash", "--bc", str(vlash), *common, "--out", str(tmp_path / "x")) == 2
    assert run_cli("policy", "train-a2c2", "--bc", str(tiny_pipeline["bc"]), "--data", str(tiny_pipeline["data"]),
                   "--dmax", "8", "--out", str(tmp_path / "x")) == 2

    scenario = tmp_path / "companions.yaml"
    scenario.write_text(f"""schema_version: 1
name: companions
version: 1
levels: [{TINY_LEVEL}]
policy: {tiny_pipeline["bc"]}.msgpack
methods:
  - {{kind: a2c2, base: {{kind: rtc, schedule: exp}}, head: {a2c2}.msgpack}}
  - {{kind: vlash, policy: {vlash}.msgpack}}
setups:
  - name: d2
    profile: {{kind: fixed, d: 2}}
    forecaster: {{kind: fixed, d: 2}}
    horizon: {{kind: adaptive, s_min: 2}}
dt_ms: 33.3
H: 8
flow_steps: 5
rollouts: 4
max_steps: 48
seeds: {{delay: 0, env: 0, policy: 0}}
""")
    db = tmp_path / "r.duckdb"
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path / "jax")
    assert run_cli("run", str(scenario), "--db", str(db), "--compile-cache", cache) == 0
    with read_only(db) as conn:
        rows = conn.execute("SELECT method, n_rollouts, nfe_per_inference, vjp_per_inference, nfe_per_env_step, "
                            "inference_ms, env_steps_per_s, cell_config FROM cells ORDER BY method").fetchall()
        n_rollout_rows = conn.execute("SELECT count(*) FROM rollouts").fetchone()[0]
    assert [r[0] for r in rows] == ["a2c2_rtc_exp", "vlash"] and n_rollout_rows == 8
    for method, n, nfe, vjp, nfe_step, inf_ms, sps, config in rows:
        assert n == 4 and nfe == 5 and nfe_step > 0 and inf_ms > 0 and sps > 0, method
        assert vjp == (5 if method == "a2c2_rtc_exp" else 0)
        config = json.loads(config)
        if method == "vlash":
            assert "head_cost" not in config
            continue
        cost = config["head_cost"]
        assert 0 < cost["head_evals_per_env_step"] <= 1
        assert 0 < cost["head_flops_per_eval"] < cost["policy_flops_per_nfe"]
        assert cost["head_nfe_equivalent_per_env_step"] == pytest.approx(
            cost["head_evals_per_env_step"] * cost["head_flops_per_eval"] / cost["policy_flops_per_nfe"])
        assert config["method"]["base"] == {"name": None, "kind": "rtc", "schedule": "exp", "beta": 5.0}
