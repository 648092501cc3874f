"""Statistics for cells and paired comparisons (host side, numpy/scipy; deterministic).

- `wilson_interval`: the Wilson score interval of a binomial proportion (solve rate), statsmodels'
  ``proportion_confint(method="wilson")``.
- `mcnemar`: McNemar's test on paired binary outcomes (per-rollout solves of two cells that share
  env seeds). Always the exact two-sided binomial test on the discordant pairs: it is cheap at any n,
  and the chi-square approximation it replaces misstates p near the 0.05 line with few pairs.
- `nearest_rank_percentile`: the one percentile definition of delays and latencies everywhere (schedule
  statistics, `trace show`, `trace import`, `record-trace`): the smallest observed value with at least q%
  of the values at or below it (numpy's ``inverted_cdf``). It always returns a value that occurred, so a
  delay percentile is a realisable whole number of steps (never "p95 3.9 steps").
- `paired_bootstrap`: a percentile bootstrap interval of the mean paired difference (candidate minus
  baseline), e.g. of per-rollout jerk: ``scipy.stats.bootstrap(paired=True, method="percentile")``, which
  resamples rollout indices, so the pairing is kept. A numpy Generator seeded with the given seed makes it
  deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

Z_95 = 1.959963984540054


def nearest_rank_percentile(values, q):
    """Nearest-rank percentile(s) of `values` for q in [0, 100] (a scalar or a sequence): the smallest value x
    with #{v <= x} >= q/100 * n. Equal to ``sorted(values)[ceil(q/100 * n) - 1]`` (index 0 at q = 0)."""
    return np.percentile(np.asarray(values), q, method="inverted_cdf")


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for successes/n; (nan, nan) when n == 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    from statsmodels.stats.proportion import proportion_confint

    # statsmodels takes the two-sided level alpha; z = Z_95 gives alpha = 0.05 (its critical value is z again)
    low, high = proportion_confint(successes, n, alpha=2.0 * float(_sps.norm.sf(z)), method="wilson")
    # At k = 0 and k = n the bounds are exactly 0 and 1; floating point would leave them 1e-16 inside,
    # putting the point estimate outside its own interval.
    low = 0.0 if successes == 0 else float(low)
    high = 1.0 if successes == n else float(high)
    return (low, high)


@dataclass(frozen=True)
class McNemarResult:
    n_pairs: int
    baseline_only: int  # pairs solved by the baseline only
    candidate_only: int  # pairs solved by the candidate only
    p_value: float
    method: str  # "exact" | "none" (no discordant pairs)

    @property
    def diff(self) -> float:
        """Candidate minus baseline solve rate over the pairs."""
        return (self.candidate_only - self.baseline_only) / self.n_pairs if self.n_pairs else math.nan


def mcnemar(baseline: np.ndarray, candidate: np.ndarray) -> McNemarResult:
    """McNemar's test on paired boolean outcomes [B] (rollout b of each cell shares its env seed)."""
    baseline = np.asarray(baseline, dtype=bool)
    candidate = np.asarray(candidate, dtype=bool)
    if baseline.shape != candidate.shape or baseline.ndim != 1:
        raise ValueError(f"paired outcomes need equal 1-d shapes, got {baseline.shape} and {candidate.shape}")
    b = int(np.sum(baseline & ~candidate))
    c = int(np.sum(~baseline & candidate))
    n_disc = b + c
    if n_disc == 0:
        return McNemarResult(baseline.size, b, c, 1.0, "none")
    p = float(_sps.binomtest(min(b, c), n_disc, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(baseline.size, b, c, min(1.0, p), "exact")


@dataclass(frozen=True)
class BootstrapResult:
    diff: float  # mean(candidate - baseline)
    low: float
    high: float
    baseline_mean: float
    n_pairs: int

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0.0 or self.high < 0.0


def paired_bootstrap(
    baseline: np.ndarray,
    candidate: np.ndarray,
    *,
    n_resamples: int = 4000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap interval of mean(candidate - baseline) over paired rollouts
    (``scipy.stats.bootstrap`` with ``paired=True``, ``method="percentile"``, `n_resamples` resamples drawn by
    ``np.random.default_rng(seed)``).

    Non-finite pairs (e.g. jerk of a one-step episode) are dropped before resampling. One pair has one
    resample, itself: the interval is that pair's difference.
    """
    baseline = np.asarray(baseline, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if baseline.shape != candidate.shape or baseline.ndim != 1:
        raise ValueError(f"paired samples need equal 1-d shapes, got {baseline.shape} and {candidate.shape}")
    keep = np.isfinite(baseline) & np.isfinite(candidate)
    diffs = candidate[keep] - baseline[keep]
    n = diffs.size
    if n == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, math.nan, 0)
    diff = float(diffs.mean())
    if n == 1:  # scipy needs two observations; every resample of one pair is that pair
        return BootstrapResult(diff, diff, diff, float(baseline[keep].mean()), 1)
    result = _sps.bootstrap((baseline[keep], candidate[keep]), _mean_difference, paired=True, vectorized=True,
                            n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                            rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return BootstrapResult(diff, float(low), float(high), float(baseline[keep].mean()), n)


def _mean_difference(baseline: np.ndarray, candidate: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(candidate - baseline, axis=axis)


def mcnemar_rollouts_needed(delta: float, discordance: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired rollouts a two-sided McNemar test needs to detect a solve-rate difference `delta` with the
    given power, when a share `discordance` of the pairs disagree (one cell solves, the other not). The
    normal approximation (Connor 1987): n = (z_{1-alpha/2} sqrt(psi) + z_power sqrt(psi - delta^2))^2 / delta^2.
    The discordance is a property of the pair of methods on the same seeds: similar methods disagree
    rarely and need fewer rollouts for the same delta."""
    from scipy.stats import norm

    if not 0 < delta <= discordance <= 1:
        raise ValueError(f"need 0 < delta <= discordance <= 1, got delta={delta}, discordance={discordance}")
    z_a, z_b = norm.ppf(1 - alpha / 2), norm.ppf(power)
    n = (z_a * math.sqrt(discordance) + z_b * math.sqrt(discordance - delta**2)) ** 2 / delta**2
    return int(math.ceil(n))


def mcnemar_detectable_delta(n: int, discordance: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest solve-rate difference `mcnemar_rollouts_needed` resolves with n paired rollouts."""
    lo, hi = 1e-4, discordance
    for _ in range(60):  # bisection: the rollouts needed fall as delta grows
        mid = (lo + hi) / 2
        if mcnemar_rollouts_needed(mid, discordance, alpha=alpha, power=power) > n:
            lo = mid
        else:
            hi = mid
    return hi
