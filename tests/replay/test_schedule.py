"""The timeline contract (docs/DESIGN.md §1): golden values, a step-by-step reference simulator, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcbench.replay.horizon import AdaptiveHorizon, FixedClockHorizon
from rtcbench.replay.schedule import n_delays_needed, schedule_from_delays


def simulate(delays, horizon, H, T):
    """Reference: run the controller of docs/DESIGN.md §1 one step at a time (one rollout, plain Python).

    Each step: 1. swap in an arrived chunk, 2. maybe start an inference, 3. execute A[t] (stall if t >= H).
    """
    t = 0  # chunk 0 is computed synchronously at step 0
    starts, s_at_start = [0], [0]
    in_flight = None  # (landing step, d)
    k = 0
    arrive = np.zeros(T, bool)
    stall = np.zeros(T, bool)
    for j in range(T):
        if in_flight is not None and in_flight[0] == j:
            t = in_flight[1]
            arrive[j] = True
            in_flight = None
        if j > 0 and in_flight is None:
            if isinstance(horizon, AdaptiveHorizon):
                go = t >= horizon.s_min
            else:
                go = j % horizon.s == 0
            if go:
                d = int(delays[k])
                k += 1
                starts.append(j)
                s_at_start.append(t)
                if d == 0:
                    t = 0  # lands in its own step, before the action
                else:
                    in_flight = (j + d, d)
        stall[j] = t >= H
        t += 1
    return np.array(starts), np.array(s_at_start), arrive, stall


horizons = st.one_of(
    st.builds(AdaptiveHorizon, s_min=st.integers(1, 8)),
    st.builds(FixedClockHorizon, s=st.integers(1, 8)),
)


@settings(max_examples=150, deadline=None)
@given(
    horizon=horizons,
    H=st.integers(1, 12),
    T=st.integers(1, 90),
    data=st.data(),
)
def test_matches_step_by_step_controller(horizon, H, T, data):
    K_raw = n_delays_needed(horizon, T)
    delays = np.array(
        [data.draw(st.lists(st.integers(0, 20), min_size=K_raw, max_size=K_raw)) for _ in range(2)], np.int64
    )  # [2, K_raw]
    sched = schedule_from_delays(delays, delays, horizon=horizon, H=H, max_steps=T)
    for b in range(2):
        starts, s_ref, arrive, stall = simulate(delays[b], horizon, H, T)
        n = int(sched.n_inferences[b])
        assert n == len(starts)
        np.testing.assert_array_equal(sched.tau[b, :n], starts)
        np.testing.assert_array_equal(sched.s[b, :n], s_ref)
        np.testing.assert_array_equal(sched.d[b, 1:n], delays[b, : n - 1])
        assert (sched.tau[b, n:] == 0).all() and (sched.d[b, n:] == 0).all() and (sched.s[b, n:] == 0).all()
        np.testing.assert_array_equal(sched.arrive[b], arrive)
        np.testing.assert_array_equal(sched.stall[b], stall)
        np.testing.assert_array_equal(np.flatnonzero(sched.start[b]), starts)
        np.testing.assert_array_equal(sched.start_s[b, starts], s_ref)
        np.testing.assert_array_equal(sched.start_d[b, starts], sched.d[b, :n])
        np.testing.assert_array_equal(sched.start_dhat[b, starts], sched.dhat[b, :n])


@settings(max_examples=100, deadline=None)
@given(s_min=st.integers(1, 8), data=st.data())
def test_adaptive_gap_is_max_of_delay_and_s_min(s_min, data):
    T = 200
    horizon = AdaptiveHorizon(s_min=s_min)
    K_raw = n_delays_needed(horizon, T)
    d = np.array([data.draw(st.lists(st.integers(0, 30), min_size=K_raw, max_size=K_raw))])
    sched = schedule_from_delays(d, d, horizon=horizon, H=8, max_steps=T)
    n = int(sched.n_inferences[0])
    gaps = np.diff(sched.tau[0, :n])  # tau_{k+1} - tau_k for k = 0..n-2
    d_k = sched.d[0, : n - 1]  # d_0 = 0 (synchronous)
    np.testing.assert_array_equal(gaps, np.maximum(d_k, s_min))


@settings(max_examples=100, deadline=None)
@given(s=st.integers(1, 8), data=st.data())
def test_fixed_clock_formula(s, data):
    T = 200
    horizon = FixedClockHorizon(s=s)
    K_raw = n_delays_needed(horizon, T)
    d = np.array([data.draw(st.lists(st.integers(0, 30), min_size=K_raw, max_size=K_raw))])
    sched = schedule_from_delays(d, d, horizon=horizon, H=8, max_steps=T)
    n = int(sched.n_inferences[0])
    tau, dk = sched.tau[0, :n], sched.d[0, :n]
    for k in range(n - 1):
        expected = s * -(-(tau[k] + dk[k]) // s) if dk[k] > s else tau[k] + s
        assert tau[k + 1] == expected
    assert (tau % s == 0).all()


@settings(max_examples=100, deadline=None)
@given(s=st.integers(1, 8), H=st.integers(1, 16), T=st.integers(2, 120), data=st.data())
def test_constant_delay_at_most_s_gives_k_times_s(s, H, T, data):
    d = data.draw(st.integers(0, s))
    for horizon in (AdaptiveHorizon(s_min=s), FixedClockHorizon(s=s)):
        K_raw = n_delays_needed(horizon, T)
        delays = np.full((3, K_raw), d)
        sched = schedule_from_delays(delays, delays, horizon=horizon, H=max(H, s), max_steps=T)
        n = -(-T // s)  # starts 0, s, 2s, ... below T
        assert (sched.n_inferences == n).all()
        np.testing.assert_array_equal(sched.tau, np.broadcast_to(np.arange(n) * s, (3, n)))


@pytest.mark.parametrize("kind", ["adaptive", "fixed_clock"])
@pytest.mark.parametrize("H", [4, 8])
def test_violation_exactly_when_d_exceeds_H_minus_s(kind, H):
    T = 120
    for s in range(1, H + 1):
        horizon = AdaptiveHorizon(s_min=s) if kind == "adaptive" else FixedClockHorizon(s=s)
        for d in range(0, s + 1):  # constant d <= s: every s_k = s
            delays = np.full((2, n_delays_needed(horizon, T)), d)
            sched = schedule_from_delays(delays, delays, horizon=horizon, H=H, max_steps=T)
            expected = 1.0 if d > H - s else 0.0
            assert sched.stats.violation_rate == expected, (s, d)
            assert sched.stall.any() == (d > H - s), (s, d)


def test_violation_is_a_stall_during_flight():
    """Independent check of the stats: d_k > H - s_k iff some step in [tau_k, tau_k + d_k) stalls, or the
    old chunk was already exhausted before tau_k (s_k > H, after an earlier long delay)."""
    rng = np.random.default_rng(0)
    T, H = 300, 8
    for horizon in (AdaptiveHorizon(s_min=3), FixedClockHorizon(s=4)):
        d = rng.choice([0, 1, 2, 3, 4, 6, 9, 14], size=(32, n_delays_needed(horizon, T)))
        sched = schedule_from_delays(d, d, horizon=horizon, H=H, max_steps=T)
        checked = 0
        for b in range(32):
            for k in range(1, int(sched.n_inferences[b])):
                lo, hi = sched.tau[b, k], sched.tau[b, k] + sched.d[b, k]
                if hi > T:
                    continue  # flight runs past the end of the rollout
                exhausted_before = sched.s[b, k] > H
                if exhausted_before:
                    assert sched.stall[b, lo - 1]
                assert sched.violation[b, k] == (bool(sched.stall[b, lo:hi].any()) or exhausted_before)
                checked += 1
        assert checked > 1000
        assert 0 < sched.stats.violation_rate < 1


def test_paper_sweep_has_no_violations():
    T, H = 256, 8
    for d in range(5):
        s = max(d, 1)
        for horizon in (FixedClockHorizon(s=s), AdaptiveHorizon(s_min=s)):
            delays = np.full((4, n_delays_needed(horizon, T)), d)
            sched = schedule_from_delays(delays, delays, horizon=horizon, H=H, max_steps=T)
            assert sched.stats.violation_rate == 0.0
            assert not sched.stall.any()
            assert sched.stats.mean_execution_horizon == s


def test_golden_adaptive_timeline():
    """The example in rtcbench/replay/schedule.py's docstring."""
    d = np.array([[2, 5, 1, 1, 1]])
    sched = schedule_from_delays(d, np.array([[3, 3, 5, 5, 5]]), horizon=AdaptiveHorizon(s_min=3), H=8, max_steps=12)
    np.testing.assert_array_equal(sched.tau, [[0, 3, 6, 11]])
    np.testing.assert_array_equal(sched.s, [[0, 3, 3, 5]])
    np.testing.assert_array_equal(sched.d, [[0, 2, 5, 1]])
    np.testing.assert_array_equal(np.flatnonzero(sched.arrive[0]), [5, 11])
    assert not sched.stall.any()
    st_ = sched.stats
    assert st_.n_inferences == 3
    assert st_.d_max == 5 and st_.d_p50 == 2
    assert st_.forecast_miss_rate == pytest.approx(1 / 3)  # d_2 = 5 > dhat_2 = 3
    assert st_.over_forecast_rate == pytest.approx(2 / 3)  # dhat 3 > 2 and 5 > 1
    assert st_.mean_execution_horizon == pytest.approx(11 / 3)


def test_golden_fixed_clock_late_chunk_keeps_raw_s():
    """A 13-step delay under fixed_clock(4): the chunk lands at 17 already exhausted; next tick 20, s = 16 > H."""
    d = np.array([[13, 1, 1, 1, 1, 1]])
    sched = schedule_from_delays(d, d, horizon=FixedClockHorizon(s=4), H=8, max_steps=24)
    np.testing.assert_array_equal(sched.tau, [[0, 4, 20]])
    np.testing.assert_array_equal(sched.s, [[0, 4, 16]])
    np.testing.assert_array_equal(np.flatnonzero(sched.stall[0]), np.arange(8, 21))
    np.testing.assert_array_equal(sched.violation, [[False, True, True]])


def test_world_pauses_control_timeline_and_pauses():
    d = np.array([[5, 0, 9, 2, 2, 2, 2, 2, 2, 2]])
    sched = schedule_from_delays(d, d, horizon=AdaptiveHorizon(s_min=3), H=8, max_steps=20, world_pauses=True)
    np.testing.assert_array_equal(sched.tau, [[0, 3, 6, 9, 12, 15, 18]])
    assert (sched.d == 0).all() and (sched.dhat == 0).all()
    np.testing.assert_array_equal(sched.d_true, [[0, 5, 0, 9, 2, 2, 2]])
    np.testing.assert_array_equal(sched.pause[0, sched.tau[0]], [0, 5, 0, 9, 2, 2, 2])
    assert sched.pause.sum() == 20
    assert not sched.arrive.any() and not sched.stall.any()
    assert sched.stats.d_max == 9 and sched.stats.violation_rate == 0.0


def test_too_few_delays_is_an_error():
    d = np.ones((1, 3), np.int64)
    with pytest.raises(ValueError, match="do not cover"):
        schedule_from_delays(d, d, horizon=AdaptiveHorizon(s_min=1), H=8, max_steps=10)


def test_dtypes_and_shapes():
    horizon = AdaptiveHorizon(s_min=2)
    d = np.full((5, n_delays_needed(horizon, 50)), 3)
    sched = schedule_from_delays(d, d, horizon=horizon, H=8, max_steps=50)
    B, K = sched.tau.shape
    assert B == 5
    for name in ("tau", "d", "dhat", "s"):
        assert getattr(sched, name).dtype == np.int32 and getattr(sched, name).shape == (B, K)
    for name in ("start_d", "start_dhat", "start_s", "pause"):
        assert getattr(sched, name).dtype == np.int32 and getattr(sched, name).shape == (5, 50)
    for name in ("start", "arrive", "stall"):
        assert getattr(sched, name).dtype == bool and getattr(sched, name).shape == (5, 50)
    assert sched.n_inferences.dtype == np.int32


def test_nearest_rank_percentile_is_a_value_that_occurred():
    from rtcbench.stats import nearest_rank_percentile

    values = np.array([1] * 95 + [4] * 5)
    # linear interpolation would say p95 = 1.15 steps, a delay no inference can have
    assert np.percentile(values, 95) == pytest.approx(1.15)
    assert nearest_rank_percentile(values, 95) == 1
    assert nearest_rank_percentile(values, 96) == 4
    rng = np.random.default_rng(0)
    for n in (1, 7, 100, 513):
        x = rng.integers(0, 9, size=n)
        for q in (0, 1, 50, 95, 99, 99.9, 100):
            k = max(int(np.ceil(q / 100 * n - 1e-12)) - 1, 0)
            assert nearest_rank_percentile(x, q) == np.sort(x)[k], (n, q)


def test_schedule_delay_percentiles_are_realisable_delays():
    rng = np.random.default_rng(3)
    B, T = 64, 120
    K = n_delays_needed(FixedClockHorizon(s=3), T)
    d = np.where(rng.random((B, K)) < 0.05, 6, rng.integers(1, 4, size=(B, K)))  # 1-3 steps, 5% spikes of 6
    sched = schedule_from_delays(d, d, horizon=FixedClockHorizon(s=3), H=8, max_steps=T)
    for value in (sched.stats.d_p50, sched.stats.d_p95, sched.stats.d_p99, sched.stats.dhat_p95):
        assert value in {1.0, 2.0, 3.0, 6.0}, value
