"""Statistics used by cells and compare, checked against values computed independently."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from rtcbench.stats import mcnemar, paired_bootstrap, wilson_interval


def test_wilson_matches_closed_form_and_edge_cases():
    # 5/10: p = 0.5, z = 1.96 -> center 0.5, half-width z*sqrt(0.025 + z^2/400)/(1 + z^2/10)
    low, high = wilson_interval(5, 10)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 10 + z * z / 400) / (1 + z * z / 10)
    assert low == pytest.approx(0.5 - half) and high == pytest.approx(0.5 + half)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    # 0 of 10 keeps a non-zero upper bound; 10 of 10 a lower bound below 1
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    # scipy's Wilson interval (another implementation than statsmodels', which rtcbench calls) agrees
    for k, n in ((1, 3), (17, 64), (200, 256), (511, 512)):
        ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # another z: the closed form at z = 2.5758 (99 %)
    z = 2.5758293035489004
    half = z * math.sqrt(0.25 / 10 + z * z / 400) / (1 + z * z / 10)
    assert wilson_interval(5, 10, z=z) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-12)


def _exact_two_sided(k: int, n: int) -> float:
    """2 * P(X <= k), X ~ Binomial(n, 1/2), k <= n/2, capped at 1: written with integers, not scipy."""
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def test_mcnemar_is_exact_at_any_number_of_discordant_pairs():
    base = np.array([True] * 10 + [False] * 2 + [True] * 30)
    cand = np.array([False] * 10 + [True] * 2 + [True] * 30)
    res = mcnemar(base, cand)
    assert (res.baseline_only, res.candidate_only, res.method) == (10, 2, "exact")
    assert res.p_value == pytest.approx(2 * sps.binom.cdf(2, 12, 0.5))  # 0.0386
    assert res.diff == pytest.approx(-8 / 42)
    # many discordant pairs (well past the 50 where a chi-square used to take over): still exact
    rng = np.random.default_rng(1)
    b = rng.random(400) < 0.7
    c = rng.random(400) < 0.6
    res = mcnemar(b, c)
    n01, n10 = int((b & ~c).sum()), int((~b & c).sum())
    assert n01 + n10 > 150
    assert res.method == "exact"
    assert res.p_value == pytest.approx(_exact_two_sided(min(n01, n10), n01 + n10), rel=1e-9)
    # 60 vs 40 discordant: exact p = 0.0569 where the corrected chi-square says 0.0574 and the uncorrected
    # one 0.0455 (< 0.05): the verdict near the line must come from the exact test
    b = np.array([True] * 60 + [False] * 40)
    res = mcnemar(b, ~b)
    assert res.p_value == pytest.approx(_exact_two_sided(40, 100), rel=1e-9)
    assert res.p_value > 0.05
    same = mcnemar(b, b)
    assert same.p_value == 1.0 and same.method == "none"


def test_paired_bootstrap_is_deterministic_and_covers_the_shift():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 0.5, size=200)
    cand = base + 0.3 + rng.normal(0, 0.1, size=200)
    a = paired_bootstrap(base, cand, seed=3)
    b = paired_bootstrap(base, cand, seed=3)
    assert a == b
    assert a.low < 0.3 < a.high and a.significant
    assert a.diff == pytest.approx(float(np.mean(cand - base)))
    zero = paired_bootstrap(base, base)
    assert (zero.diff, zero.low, zero.high, zero.significant) == (0.0, 0.0, 0.0, False)
    with_nan = paired_bootstrap(np.array([1.0, np.nan, 2.0]), np.array([1.5, 3.0, 2.5]))
    assert with_nan.n_pairs == 2 and with_nan.diff == pytest.approx(0.5)
    one = paired_bootstrap(np.array([1.0, np.nan]), np.array([1.25, 2.0]))
    assert (one.n_pairs, one.diff, one.low, one.high) == (1, 0.25, 0.25, 0.25)


def test_paired_bootstrap_is_the_percentile_interval_of_resampled_pairs():
    """Golden check written out here: resample rollout indices (the same index for both cells of a pair) with
    numpy's default_rng(seed), take each resample's mean difference, and the 2.5 % and 97.5 % quantiles."""
    rng = np.random.default_rng(5)
    base = rng.gamma(3.0, 0.3, size=64)
    cand = base * rng.normal(1.1, 0.2, size=64)
    n_resamples, seed = 2000, 11
    idx = np.random.default_rng(seed).integers(0, 64, size=(n_resamples, 64))
    means = (cand[idx] - base[idx]).mean(axis=1)
    for confidence in (0.95, 0.9):
        alpha = (1 - confidence) / 2
        res = paired_bootstrap(base, cand, n_resamples=n_resamples, confidence=confidence, seed=seed)
        assert (res.low, res.high) == pytest.approx(tuple(np.quantile(means, [alpha, 1 - alpha])), rel=1e-12)
        assert res.baseline_mean == pytest.approx(base.mean()) and res.n_pairs == 64
    # the seed decides the resamples
    assert paired_bootstrap(base, cand, seed=seed) != paired_bootstrap(base, cand, seed=seed + 1)


def test_wilson_bounds_are_exact_at_the_extremes():
    # the point estimate must lie inside its own interval, also at 0/n and n/n (a plot's error bar
    # would otherwise be negative)
    for n in (1, 7, 256, 512, 4096):
        assert wilson_interval(n, n)[1] == 1.0
        assert wilson_interval(0, n)[0] == 0.0


def test_mcnemar_sample_size_golden_and_inverse():
    """n = (z_.975 sqrt(psi) + z_.8 sqrt(psi - delta^2))^2 / delta^2, worked by hand for delta 0.05, psi 0.2:
    (1.959964 * 0.447214 + 0.841621 * 0.444410)^2 / 0.0025 = 625.56 -> 626 rollouts."""
    import pytest

    from rtcbench.stats import mcnemar_detectable_delta, mcnemar_rollouts_needed

    assert mcnemar_rollouts_needed(0.05, 0.2) == 626
    assert mcnemar_rollouts_needed(0.05, 0.1) < mcnemar_rollouts_needed(0.05, 0.2)  # fewer disagreements: fewer
    delta = mcnemar_detectable_delta(512, 0.2)
    assert mcnemar_rollouts_needed(delta, 0.2) <= 512 < mcnemar_rollouts_needed(delta - 0.001, 0.2)
    with pytest.raises(ValueError):
        mcnemar_rollouts_needed(0.3, 0.2)  # a difference larger than the discordant share is impossible
