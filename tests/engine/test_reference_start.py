"""`start: reference`: the first s + d steps as the RTC reference's eval loop runs them (issue #16, item 15).

rtcbench's default start executes the first chunk's first s + d actions. The reference samples a second
chunk from the first observation, guided by the first, and executes its actions d..s-1. With
start="reference" the engine must reproduce a plain loop written from that description
(`engine_helpers.reference_loop`) step for step, and differ from the default start.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import N_FLOW, B, H, Loop, T, assert_same_actions, make_schedule, reference_loop, run

from rtcbench.methods.config import NaiveMethod, RTCMethod
from rtcbench.methods.naive import naive_chunk
from rtcbench.methods.rtc import rtc_chunk


def test_reference_start_schedule_golden():
    sched = make_schedule(np.full((B, T), 2), s_min=3, start="reference")
    # inference 1 starts at step 0 beside the synchronous first chunk, then every 3 steps
    np.testing.assert_array_equal(sched.tau[0, :5], [0, 0, 3, 6, 9])
    np.testing.assert_array_equal(sched.s[0, :4], [0, 3, 3, 3])  # what the method sees (the reference's s)
    np.testing.assert_array_equal(sched.shift[0, :4], [0, 0, 3, 3])  # actions consumed at each start
    assert sched.start[:, 0].all() and sched.start_d[0, 0] == 2 and sched.start_s[0, 0] == 3
    assert sched.start_shift[0, 0] == 0 and sched.start_shift[0, 3] == 3
    assert sched.arrive[0, 2] and not sched.arrive[0, 3]  # inference 1 lands at d = 2
    assert not sched.stall.any() and sched.stats.violation_rate == 0.0
    assert sched.reference_start
    sync = make_schedule(np.full((B, T), 2), s_min=3)
    np.testing.assert_array_equal(sync.tau[0, :4], [0, 3, 6, 9])
    assert not sync.reference_start and (sync.shift == sync.s).all()
    assert sched.n_inferences[0] == sync.n_inferences[0] + 1


@pytest.fixture(scope="module")
def naive_loop(env_loop, policy):
    return Loop(env_loop, policy, lambda *a: naive_chunk(*a, n=N_FLOW))


@pytest.mark.parametrize("d,s", [(2, 3), (0, 1), (4, 4)])
def test_naive_reference_start_matches_the_reference_loop(level, policy, naive_three_setups, naive_loop, d, s):
    sched = make_schedule(np.full((B, T), d), s_min=s, start="reference")
    out = run(level, policy, NaiveMethod(), sched)
    assert out.per_rollout["stall_steps"].sum() == 0
    assert_same_actions(out.extra["actions"], reference_loop(naive_loop, d, s))
    if d > 0:  # the default start keeps the first chunk for s + d steps: the two differ from step d on
        sync = run(level, policy, NaiveMethod(), make_schedule(np.full((B, T), d), s_min=s))
        np.testing.assert_array_equal(sync.extra["actions"][:, :d], out.extra["actions"][:, :d])
        assert not np.allclose(sync.extra["actions"][:, d : s + d], out.extra["actions"][:, d : s + d], atol=1e-3)


def test_rtc_reference_start_matches_the_reference_loop(level, policy, env_loop, naive_three_setups):
    d, s = 2, 3
    loop = Loop(env_loop, policy, lambda *a: rtc_chunk(*a, n=N_FLOW, schedule="exp", beta=5.0))
    out = run(level, policy, RTCMethod(), make_schedule(np.full((B, T), d), s_min=s, start="reference"))
    assert_same_actions(out.extra["actions"], reference_loop(loop, d, s))
    assert H - s >= d  # the fixed sweep's constraint: no violation
