"""Every method against a simple host-side loop (engine_helpers), step for step with the same keys.

With a fixed delay d <= s (adaptive s_min = s) the timeline is periodic: at every start the controller
has consumed s actions, so the chunk-level loop is "execute d old actions A[s:s+d], then new[d:s]".
With d = 0 and s = 1, naive is a plain closed loop (every step samples and executes the first action),
and te is the ACT ensemble of the last H chunks.

bid, ttrtc and te each compile one more episode (~35-60 s each on 2 busy cores); they carry the `slow`
marker so that `-m "not slow"` keeps the naive/rtc core quick.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import N_FLOW, B, H, Loop, T, assert_same_actions, chunk_level_loop, closed_loop, make_schedule, run

from rtcbench.methods.bid import bid_chunk
from rtcbench.methods.config import BIDMethod, NaiveMethod, RTCMethod, TEMethod, TTRTCMethod
from rtcbench.methods.naive import naive_chunk
from rtcbench.methods.rtc import rtc_chunk
from rtcbench.methods.ttrtc import ttrtc_chunk


@pytest.fixture(scope="module")
def naive_loop(env_loop, policy):
    return Loop(env_loop, policy, lambda *a: naive_chunk(*a, n=N_FLOW))


@pytest.mark.parametrize("d,s", [(2, 3), (3, 3), (1, 5)])
def test_naive_matches_chunk_loop(level, policy, naive_three_setups, naive_loop, d, s):
    out = run(level, policy, NaiveMethod(), make_schedule(np.full((B, T), d), s_min=s))
    assert out.per_rollout["stall_steps"].sum() == 0
    assert_same_actions(out.extra["actions"], chunk_level_loop(naive_loop, d, s))


def test_naive_d0_s1_is_plain_closed_loop(level, policy, naive_three_setups, naive_loop):
    out = run(level, policy, NaiveMethod(), make_schedule(np.zeros((B, T), int), s_min=1))
    assert (out.per_rollout["n_inferences"] == out.per_rollout["length"]).all()  # one inference per step
    assert_same_actions(out.extra["actions"], closed_loop(naive_loop))


@pytest.fixture(scope="module")
def rtc_loop(env_loop, policy):
    return Loop(env_loop, policy, lambda *a: rtc_chunk(*a, n=N_FLOW, schedule="exp", beta=5.0))


@pytest.mark.parametrize("d,s", [(2, 3), (1, 4)])
def test_rtc_matches_chunk_loop(level, policy, rtc_loop, naive_three_setups, d, s):
    sched = make_schedule(np.full((B, T), d), s_min=s)
    out = run(level, policy, RTCMethod(), sched)
    assert_same_actions(out.extra["actions"], chunk_level_loop(rtc_loop, d, s))
    # common random numbers: the first s + d actions come from the shared first chunk under both methods;
    # after that guidance changes the chunks
    naive = run(level, policy, NaiveMethod(), sched)
    np.testing.assert_array_equal(naive.extra["actions"][:, : s + d], out.extra["actions"][:, : s + d])
    assert not np.allclose(naive.extra["actions"][:, s + d :], out.extra["actions"][:, s + d :], atol=1e-3)
    assert (out.per_rollout["vjp"] == out.per_rollout["n_inferences"] * N_FLOW).all()


@pytest.mark.slow
def test_bid_matches_chunk_loop(level, policy, env_loop):
    d, s = 1, 3
    out = run(level, policy, BIDMethod(n_samples=4), make_schedule(np.full((B, T), d), s_min=s))
    loop = Loop(env_loop, policy, lambda *a: bid_chunk(*a, n=N_FLOW, n_samples=4))
    assert_same_actions(out.extra["actions"], chunk_level_loop(loop, d, s))
    assert (out.per_rollout["nfe"] == out.per_rollout["n_inferences"] * 4 * N_FLOW).all()


@pytest.mark.slow
def test_ttrtc_matches_chunk_loop(level, policy, env_loop):
    d, s = 2, 4
    out = run(level, policy, TTRTCMethod(policy="unused.msgpack"), make_schedule(np.full((B, T), d), s_min=s))
    loop = Loop(env_loop, policy, lambda *a: ttrtc_chunk(*a, n=N_FLOW))
    assert_same_actions(out.extra["actions"], chunk_level_loop(loop, d, s))
    # the first min(dhat, H - s) positions of a ttrtc chunk are the prefix itself, untouched
    A = loop.reset()
    prefix = np.concatenate([np.asarray(A)[:, s:], np.zeros((B, s, loop.Ad))], axis=1)
    for dhat, frozen in ((3, 3), (6, H - s)):
        new = np.asarray(loop.new_chunk(prefix, dhat, s))
        np.testing.assert_array_equal(new[:, :frozen], prefix[:, :frozen])
        assert not np.allclose(new[:, frozen], prefix[:, frozen])


@pytest.mark.slow
def test_te_matches_act_ensemble(level, policy, naive_loop):
    m = 0.3
    out = run(level, policy, TEMethod(m=m), make_schedule(np.zeros((B, T), int), s_min=1))
    assert_same_actions(out.extra["actions"], closed_loop(naive_loop, te_m=m))
