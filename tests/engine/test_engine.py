"""Engine properties: one compilation per method for any delay setup, stalls, fallbacks, determinism,
sync's wall steps, and the cost accounting."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import N_FLOW, B, H, T, make_schedule, run, three_delay_setups

from rtcbench.methods.config import NaiveMethod, SyncMethod

PER_ROLLOUT = ("solved", "return", "length", "jerk_max_d1", "jerk_mean_d1", "jerk_max_d2", "jerk_mean_d2",
               "jerk_all_max_d1", "jerk_all_mean_d1", "jerk_all_max_d2", "jerk_all_mean_d2",
               "stall_steps", "wall_steps", "n_inferences", "nfe", "vjp")


def test_three_delay_setups_compile_once(naive_three_setups):
    outs, n_compiles = naive_three_setups
    assert n_compiles == 1
    assert [o.cache_hit for o in outs.values()] == [False, True, True]
    assert outs["fixed"].compile_s > 0 and outs["mixture"].compile_s == 0.0
    acts = [o.extra["actions"] for o in outs.values()]
    assert not np.array_equal(acts[0], acts[1]) and not np.array_equal(acts[1], acts[2])  # arrays were used


def violation_stall_steps(sched) -> np.ndarray:
    """Stall steps per rollout from the per-inference arrays: inference k with d > H - s leaves
    [tau + H - s, tau + d) uncovered (clipped to the run)."""
    out = np.zeros(sched.tau.shape[0], int)
    for b in range(sched.tau.shape[0]):
        for k in range(1, int(sched.n_inferences[b])):
            tau, d, s = int(sched.tau[b, k]), int(sched.d[b, k]), int(sched.s[b, k])
            if d > H - s:
                out[b] += max(0, min(tau + d, T) - max(tau + H - s, tau))
    return out


def test_stalls_equal_schedule_violations(level, policy, naive_three_setups):
    rng = np.random.default_rng(5)
    d = np.where(rng.random((B, T)) < 0.3, rng.integers(6, 12, (B, T)), rng.integers(1, 4, (B, T)))
    sched = make_schedule(d, np.minimum(d, 3), s_min=3)
    out = run(level, policy, NaiveMethod(), sched)
    engine_stalls = out.extra["stall_steps_all"]
    assert engine_stalls.sum() > 0
    np.testing.assert_array_equal(engine_stalls, sched.stall.sum(1))
    np.testing.assert_array_equal(engine_stalls, violation_stall_steps(sched))
    # first-episode stall count is a part of the whole-run count
    assert (out.per_rollout["stall_steps"] <= engine_stalls).all()
    # hold fallback: a stall step repeats the previous executed action
    acts = out.extra["actions"]  # [B, T, A]
    bb, jj = np.nonzero(sched.stall)
    np.testing.assert_array_equal(acts[bb, jj], acts[bb, jj - 1])
    # zero fallback (traced: same compiled episode): stall steps execute zeros, other steps are unchanged
    zero = run(level, policy, NaiveMethod(), sched, fallback="zero")
    assert zero.cache_hit
    np.testing.assert_array_equal(zero.extra["actions"][bb, jj], 0.0)
    first = np.argmax(sched.stall, axis=1)  # first stall step per rollout (0 if none)
    for b in range(B):
        upto = first[b] if sched.stall[b].any() else T
        np.testing.assert_array_equal(zero.extra["actions"][b, :upto], acts[b, :upto])


def test_deterministic_and_delay_seed_matters(level, policy, naive_three_setups):
    sched = make_schedule(three_delay_setups(seed=0)["mixture"])
    a, b = run(level, policy, NaiveMethod(), sched), run(level, policy, NaiveMethod(), sched)
    for k in PER_ROLLOUT:
        np.testing.assert_array_equal(a.per_rollout[k], b.per_rollout[k], err_msg=k)
    np.testing.assert_array_equal(a.extra["actions"], b.extra["actions"])
    other = run(level, policy, NaiveMethod(), make_schedule(three_delay_setups(seed=1)["mixture"]))
    assert not np.array_equal(a.extra["actions"], other.extra["actions"])
    # a different env seed changes the rollouts too; the policy seed changes the flow noise
    env2 = run(level, policy, NaiveMethod(), sched, env_seed=123)
    pol2 = run(level, policy, NaiveMethod(), sched, policy_seed=123)
    assert not np.array_equal(a.extra["actions"], env2.extra["actions"])
    assert not np.array_equal(a.extra["actions"][:, 0], pol2.extra["actions"][:, 0])
    np.testing.assert_array_equal(a.extra["actions"][:, 0], env2.extra["actions"][:, 0])  # same first obs


def test_metrics_consistent(level, policy, naive_three_setups):
    outs, _ = naive_three_setups
    out = outs["mixture"]
    p = out.per_rollout
    assert set(PER_ROLLOUT) <= set(p) and all(v.shape == (B,) for v in p.values())
    assert ((p["length"] >= 1) & (p["length"] <= T)).all()
    assert (p["wall_steps"] == p["length"]).all()  # no world pauses
    assert (p["nfe"] == p["n_inferences"] * N_FLOW).all() and (p["vjp"] == 0).all()
    assert out.nfe_per_inference == N_FLOW and out.vjp_per_inference == 0
    # smoothness from the recorded actions of the first episode: on the level's used action dims and on all
    from rtcbench.levels import used_action_dims

    used = used_action_dims(level)
    assert 0 < len(used) < level.action_dim  # the level leaves dims unused, so the two measures differ
    acts = out.extra["actions"]
    for b in range(B):
        for prefix, a in (("jerk_all", acts[b, : p["length"][b]]), ("jerk", acts[b, : p["length"][b]][:, used])):
            d1 = np.linalg.norm(np.diff(a, axis=0), axis=-1)
            d2 = np.linalg.norm(a[2:] - 2 * a[1:-1] + a[:-2], axis=-1)
            np.testing.assert_allclose(p[f"{prefix}_max_d1"][b], d1.max(), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(p[f"{prefix}_mean_d1"][b], d1.mean(), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(p[f"{prefix}_max_d2"][b], d2.max(), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(p[f"{prefix}_mean_d2"][b], d2.mean(), rtol=1e-5, atol=1e-7)
    assert (p["jerk_mean_d2"] < p["jerk_all_mean_d2"]).all()  # random weights put noise on the unused dims too
    # wasted evaluations: every policy call evaluates all B rollouts; starts (k >= 1) are the useful ones
    sched = make_schedule(three_delay_setups()["mixture"])
    starts = int(sched.start[:, 1:].sum())
    assert out.wasted_policy_evals == out.policy_calls * B - starts
    assert out.policy_calls == int(sched.start[:, 1:].any(0).sum())


def test_sync_counts_world_pauses(level, policy, naive_three_setups):
    d = three_delay_setups()["mixture"]
    sched = make_schedule(d, s_min=4, world_pauses=True)
    out = run(level, policy, SyncMethod(), sched)
    assert out.cache_hit  # sync is naive's computation on a paused timeline: no new compile
    p = out.per_rollout
    assert (p["stall_steps"] == 0).all()
    want = [p["length"][b] + sched.pause[b, : p["length"][b]].sum() for b in range(B)]
    np.testing.assert_array_equal(p["wall_steps"], want)
    assert (p["wall_steps"] > p["length"]).any()
    with pytest.raises(ValueError, match="world_pauses"):
        run(level, policy, SyncMethod(), make_schedule(d))
