"""Profiles, tail control, forecasters and seeds (docs/DESIGN.md §2)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replay_helpers import TRACE_MS

from rtcbench.replay.forecast import (
    EwmaForecaster,
    FixedForecaster,
    OracleForecaster,
    WindowMaxForecaster,
    WindowQuantileForecaster,
    forecast,
)
from rtcbench.replay.profiles import DrawContext, ms_to_steps
from rtcbench.replay.schedule import build_schedule
from rtcbench.replay.setup import DelaySetup
from rtcbench.replay.tail import draw_delays
from rtcbench.replay.traces import read_trace, write_trace

LONGTAIL = {
    "kind": "mixture",
    "base": {"kind": "categorical", "values": [1, 2, 3], "probs": [0.25, 0.5, 0.25]},
    "p_spike": 0.05,
    "d_spike": 6,
}
PROFILES = {
    "fixed": {"kind": "fixed", "d": 2},
    "categorical": {"kind": "categorical", "values": [0, 4], "probs": [0.5, 0.5]},
    "lognormal": {"kind": "lognormal", "median_ms": 60, "sigma": 0.5, "shift_ms": 5},
    "pareto": {"kind": "pareto", "scale_ms": 30, "alpha": 1.5},
    "mixture": LONGTAIL,
    "bursty": {
        "kind": "bursty",
        "good": {"kind": "fixed", "d": 1},
        "bad": {"kind": "fixed", "d": 7},
        "p_good_to_bad": 0.05,
        "p_bad_to_good": 0.2,
    },
}


def make_setup(profile, tail=(), forecaster=None, horizon=None, name="x") -> DelaySetup:
    return DelaySetup.model_validate(
        {
            "name": name,
            "profile": profile,
            "tail": list(tail),
            "forecaster": forecaster or {"kind": "window_max", "b": 10, "init": 3},
            "horizon": horizon or {"kind": "adaptive", "s_min": 3},
        }
    )


def draws(profile, tail=(), seed=0, shape=(64, 200), base_dir=".") -> np.ndarray:
    setup = make_setup(profile, tail)
    return draw_delays(setup.profile, setup.tail, seed, DrawContext(dt_ms=33.3, base_dir=Path(base_dir), shape=shape))


# ---------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize("ms", ["0", "10", "33.3", "33.31", "66.6", "99.9", "100", "250", "1000.05"])
@pytest.mark.parametrize("dt", ["33.3", "20", "16.6"])
def test_ms_to_steps_is_exact_ceil(ms, dt):
    exact = math.ceil(Fraction(ms) / Fraction(dt))  # exact decimal arithmetic
    assert int(ms_to_steps(float(ms), float(dt))) == exact


# ---------------------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("kind", list(PROFILES))
def test_same_seed_same_delays_other_seed_differs(kind):
    a = draws(PROFILES[kind], seed=7)
    b = draws(PROFILES[kind], seed=7)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and a.shape == (64, 200) and (a >= 0).all()
    if kind != "fixed":
        assert not np.array_equal(a, draws(PROFILES[kind], seed=8))


def test_mixture_spike_rate_and_base():
    d = draws(LONGTAIL, shape=(400, 500))  # 200k draws
    spikes = (d == 6).mean()
    assert abs(spikes - 0.05) < 0.003  # ~6 standard errors
    base = d[d != 6]
    assert set(np.unique(base)) == {1, 2, 3}
    assert abs((base == 2).mean() - 0.5) < 0.01


def test_bursty_is_correlated_and_has_stationary_bad_fraction():
    d = draws(PROFILES["bursty"], shape=(200, 1000))
    bad = d == 7
    assert abs(bad.mean() - 0.05 / 0.25) < 0.01
    # P(bad | previous bad) = 1 - p_bad_to_good = 0.8, far above the marginal 0.2
    assert abs(bad[:, 1:][bad[:, :-1]].mean() - 0.8) < 0.01


def test_lognormal_median_in_steps():
    d = draws(PROFILES["lognormal"], shape=(200, 500))
    # median latency 65 ms -> ceil(65 / 33.3) = 2 steps
    assert np.median(d) == 2


def test_pareto_tail_index():
    d = draws({"kind": "pareto", "scale_ms": 33.3, "alpha": 1.5}, shape=(400, 500))
    # P(L > 10 * 33.3 ms) = 10^-1.5; L > 333 ms <=> d > 10 steps
    assert abs((d > 10).mean() - 10**-1.5) < 0.003


def test_trace_sequential_replays_ceil_ms_in_order(scenario_dir):
    profile = {"kind": "trace", "path": "traces/t.json", "mode": "sequential"}
    d = draws(profile, shape=(50, 37), base_dir=scenario_dir)
    expected = [math.ceil(Fraction(str(ms)) / Fraction("33.3")) for ms in TRACE_MS]  # [N]
    n = len(expected)
    offsets = set()
    for row in d:
        # every row is the trace in order from some offset, wrapping around
        matches = [o for o in range(n) if all(row[k] == expected[(o + k) % n] for k in range(len(row)))]
        assert matches, row
        offsets.add(matches[0])
    assert len(offsets) > 3  # offsets differ across rollouts
    fixed = draws({**profile, "offset": 0}, shape=(3, 25), base_dir=scenario_dir)
    np.testing.assert_array_equal(fixed, np.broadcast_to([expected[k % n] for k in range(25)], (3, 25)))


def test_trace_resample_draws_from_trace(scenario_dir):
    d = draws({"kind": "trace", "path": "traces/t.json", "mode": "resample"}, shape=(100, 100), base_dir=scenario_dir)
    allowed = set(ms_to_steps(np.array(TRACE_MS), 33.3).tolist())
    assert set(np.unique(d)) == allowed


# ---------------------------------------------------------------------------------------------- tail control


@pytest.mark.parametrize("kind", list(PROFILES))
@pytest.mark.parametrize("d_max", [0, 2, 5])
def test_cap_never_exceeds_bound_and_only_lowers(kind, d_max):
    base = draws(PROFILES[kind])
    capped = draws(PROFILES[kind], [{"kind": "cap", "d_max": d_max}])
    assert capped.max() <= d_max
    np.testing.assert_array_equal(capped, np.minimum(base, d_max))


@pytest.mark.parametrize("kind", list(PROFILES))
@pytest.mark.parametrize("n", [1, 2, 4])
def test_hedge_never_worse_than_base_draw_for_draw(kind, n):
    base = draws(PROFILES[kind])
    hedged = draws(PROFILES[kind], [{"kind": "hedge", "n": n}])
    assert (hedged <= base).all()
    if n == 1:
        np.testing.assert_array_equal(hedged, base)
    elif kind not in ("fixed",):
        assert hedged.mean() < base.mean()


def test_hedge_after_cap_replicas_are_capped():
    tails = [{"kind": "cap", "d_max": 4}, {"kind": "hedge", "n": 3}]
    d = draws(LONGTAIL, tails)
    assert d.max() <= 4
    assert (d <= draws(LONGTAIL, tails[:1])).all()


def test_drop_spikes_removes_fraction_of_spikes():
    shape = (400, 500)
    base = draws(LONGTAIL, shape=shape)
    dropped = draws(LONGTAIL, [{"kind": "drop_spikes", "p": 0.9}], shape=shape)
    assert abs((dropped == 6).mean() - 0.005) < 0.001
    changed = dropped != base
    assert (base[changed] == 6).all()  # only spikes change
    assert set(np.unique(dropped[changed])) <= {1, 2, 3}  # redrawn from the base
    none = draws(LONGTAIL, [{"kind": "drop_spikes", "p": 0.0}], shape=shape)
    np.testing.assert_array_equal(none, base)


def test_drop_spikes_with_threshold_on_lognormal():
    profile = PROFILES["lognormal"]
    base = draws(profile, shape=(200, 300))
    dropped = draws(profile, [{"kind": "drop_spikes", "p": 1.0, "above": 3}], shape=(200, 300))
    assert dropped.max() <= 3
    np.testing.assert_array_equal(dropped[base <= 3], base[base <= 3])


# ---------------------------------------------------------------------------------------------- forecasters


def brute_window(d_row, b, init, k):
    """The buffer before inference k (1-based): the last b of [init, d_1, ..., d_{k-1}]."""
    return ([init] + list(d_row[: k - 1]))[-b:]


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 12),
    init=st.integers(0, 6),
    rows=st.lists(st.lists(st.integers(0, 15), min_size=30, max_size=30), min_size=1, max_size=3),
)
def test_window_max_is_brute_force_max(b, init, rows):
    d = np.array(rows)
    dhat = forecast(WindowMaxForecaster(b=b, init=init), d)
    for r, row in enumerate(rows):
        for k in range(1, 31):
            assert dhat[r, k - 1] == max(brute_window(row, b, init, k))


@settings(max_examples=60, deadline=None)
@given(
    q=st.sampled_from([0.1, 0.5, 0.9, 0.95, 1.0]),
    b=st.integers(1, 12),
    init=st.integers(0, 6),
    row=st.lists(st.integers(0, 15), min_size=25, max_size=25),
)
def test_window_quantile_is_brute_force_inverted_cdf(q, b, init, row):
    dhat = forecast(WindowQuantileForecaster(q=q, b=b, init=init), np.array([row]))
    for k in range(1, 26):
        window = np.array(brute_window(row, b, init, k))
        assert dhat[0, k - 1] == np.quantile(window, q, method="inverted_cdf")


def test_ewma_recursion():
    row = [4, 0, 2, 9, 1, 1]
    dhat = forecast(EwmaForecaster(alpha=0.5, margin=0.5, init=2), np.array([row]))[0]
    e, expected = 2.0, []
    for d in row:
        expected.append(math.ceil(e + 0.5))
        e = 0.5 * d + 0.5 * e
    np.testing.assert_array_equal(dhat, expected)


def test_fixed_forecaster():
    np.testing.assert_array_equal(forecast(FixedForecaster(d=3), np.zeros((2, 4), int)), np.full((2, 4), 3))


@pytest.mark.parametrize("kind", list(PROFILES))
def test_oracle_has_no_misses(kind):
    setup = make_setup(PROFILES[kind], forecaster={"kind": "oracle"})
    sched = build_schedule(setup, H=8, dt_ms=33.3, n_rollouts=32, max_steps=200, delay_seed=0, base_dir=".")
    assert sched.stats.forecast_miss_rate == 0.0 and sched.stats.over_forecast_rate == 0.0
    assert not sched.forecast_miss.any()
    assert isinstance(OracleForecaster(), OracleForecaster)


def test_forecast_uses_only_earlier_delays():
    """Changing d_k must not change dhat_1..dhat_k (no peeking) for the deployable forecasters."""
    rng = np.random.default_rng(3)
    d = rng.integers(0, 10, size=(4, 40))
    for f in (
        WindowMaxForecaster(b=5, init=2),
        WindowQuantileForecaster(q=0.9, b=8, init=1),
        EwmaForecaster(alpha=0.3, init=1),
    ):
        base = forecast(f, d)
        for k in (0, 10, 39):
            changed = d.copy()
            changed[:, k] += 50
            np.testing.assert_array_equal(forecast(f, changed)[:, : k + 1], base[:, : k + 1])


# ---------------------------------------------------------------------------------------------- seeds


def test_build_schedule_is_deterministic_per_seed():
    setup = make_setup(LONGTAIL, [{"kind": "hedge", "n": 2}])
    kw = dict(H=8, dt_ms=33.3, n_rollouts=64, max_steps=128, base_dir=".")
    a = build_schedule(setup, delay_seed=5, **kw)
    b = build_schedule(setup, delay_seed=5, **kw)
    c = build_schedule(setup, delay_seed=6, **kw)
    for name in ("tau", "d", "dhat", "s", "start", "start_d", "arrive", "stall", "n_inferences"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.stats == b.stats
    assert not np.array_equal(a.start, c.start)


def test_setups_share_delays_across_forecasters_and_horizons():
    """Common random numbers: the delay sequence depends on the profile, tail and seed only."""
    kw = dict(H=8, dt_ms=33.3, n_rollouts=16, max_steps=100, delay_seed=1, base_dir=".")
    a = build_schedule(make_setup(LONGTAIL), **kw)
    b = build_schedule(make_setup(LONGTAIL, forecaster={"kind": "oracle"}), **kw)
    c = build_schedule(make_setup(LONGTAIL, horizon={"kind": "fixed_clock", "s": 4}), **kw)
    np.testing.assert_array_equal(a.d, b.d)
    for r in range(16):
        n = min(a.n_inferences[r], c.n_inferences[r])
        np.testing.assert_array_equal(a.d[r, :n], c.d[r, :n])


def test_edited_trace_changes_delays(tmp_path):
    write_trace(tmp_path / "a.json", name="a", latencies_ms=[10, 20, 30], source="test")
    profile = {"kind": "trace", "path": "a.json", "mode": "sequential", "offset": 0}
    before = draws(profile, shape=(2, 6), base_dir=tmp_path)
    sha_before = read_trace(tmp_path / "a.json").sha256
    write_trace(tmp_path / "a.json", name="a", latencies_ms=[10, 200, 30], source="test")
    assert read_trace(tmp_path / "a.json").sha256 != sha_before
    np.testing.assert_array_equal(draws(profile, shape=(2, 6), base_dir=tmp_path)[0], [1, 7, 1, 1, 7, 1])
    np.testing.assert_array_equal(before[0], [1, 1, 1, 1, 1, 1])


# ---------------------------------------------------------------------------------------------- streams

TAILS = {
    "none": [],
    "cap": [{"kind": "cap", "d_max": 4}],
    "drop": [{"kind": "drop_spikes", "p": 0.5, "above": 3}],
    "hedge_after_cap": [{"kind": "cap", "d_max": 5}, {"kind": "hedge", "n": 2}],
}


@pytest.mark.parametrize("tail", list(TAILS))
@pytest.mark.parametrize("kind", [k for k in PROFILES if k != "fixed"] + ["trace_sequential", "trace_resample"])
def test_rollout_delays_do_not_depend_on_how_many_rollouts_run(kind, tail, scenario_dir):
    """Rollout b's delays are a function of (delay seed, b) only (schedule version 2): the first N rollouts of
    a run of 16 are a run of N, and rollouts 5..11 drawn alone are rows 5..11 of the full draw."""
    if kind.startswith("trace"):
        profile = {"kind": "trace", "path": "traces/t.json", "mode": kind.split("_")[1]}
        base_dir = scenario_dir
    else:
        profile, base_dir = PROFILES[kind], "."
    setup = make_setup(profile, TAILS[tail])

    def block(first: int, n: int) -> np.ndarray:
        ctx = DrawContext(dt_ms=33.3, base_dir=Path(base_dir), shape=(n, 120), first_rollout=first)
        return draw_delays(setup.profile, setup.tail, 11, ctx)

    full = block(0, 16)
    np.testing.assert_array_equal(block(0, 3), full[:3])
    np.testing.assert_array_equal(block(0, 8), full[:8])
    np.testing.assert_array_equal(block(5, 7), full[5:12])
    assert len({row.tobytes() for row in full}) > 1  # rollouts draw different sequences


def test_schedule_version_is_part_of_every_hash(scenario_dir, monkeypatch):
    """A change of how delays are drawn makes runs 'not comparable', never a regression."""
    from replay_helpers import scenario_dict, write_scenario

    import rtcbench.scenario as scenario_module
    from rtcbench.scenario import Scenario

    sc = Scenario.from_yaml(write_scenario(scenario_dir, scenario_dict()))
    cell = next(iter(sc.cells()))
    before = (sc.config_hash, sc.comparability_key, sc.cell_comparability_key(cell), sc.cell_config_hash(cell))
    monkeypatch.setattr(scenario_module, "SCHEDULE_VERSION", scenario_module.SCHEDULE_VERSION + 1)
    after = (sc.config_hash, sc.comparability_key, sc.cell_comparability_key(cell), sc.cell_config_hash(cell))
    assert all(a != b for a, b in zip(before, after, strict=True))
