"""Paired comparisons of two cells of one run, as `rtcbench report` and `rtcbench study` print them.

Inside a run, rollout b of every cell shares its env seed, and inside a setup every method shares the delay
schedule, so two cells are compared rollout by rollout (frames with a ``solved`` column and the jerk
columns, one row per rollout, in rollout order):

- solve rates: McNemar's exact test (`rtcbench.stats.mcnemar`); effect = difference of solve rates;
- smoothness (`SMOOTHNESS`, ``jerk_mean_d2``: per rollout, the mean over executed steps of the second
  difference ||a_t - 2a_{t-1} + a_{t-2}|| on the level's used action dimensions): a paired bootstrap 95%
  interval of the mean difference (`paired_jerk`);
- the change of a gap between two setups (does tail control change how far method A is ahead of B?):
  a paired bootstrap interval of mean[(A1 - B1) - (A2 - B2)] over rollouts (`gap_change`).

`verdict` turns a difference and its p-value into *reproduced* / *contradicted* / *not significant* at
`ALPHA`.

Why the mean and not the maximum (``jerk_max_d2``, Black et al. 2025's proxy): a per-rollout maximum grows
with the episode's length, so a method whose episodes last longer (e.g. because it fails later) looks
rougher for that alone; the mean per step does not depend on the length. Every claim, finding, paired
interval and figure that speaks of smoothness uses `SMOOTHNESS`, and page text names it `SMOOTHNESS_LABEL`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rtcbench.stats import BootstrapResult, mcnemar, paired_bootstrap

ALPHA = 0.05
# The smoothness statistic of every claim, finding, paired interval and figure, and its name on the pages.
SMOOTHNESS = "jerk_mean_d2"
SMOOTHNESS_LABEL = "mean |second difference| per step, used action dims"


@dataclass(frozen=True)
class Paired:
    """Candidate minus baseline on paired rollouts."""

    base_rate: float
    cand_rate: float
    diff: float
    p_value: float
    n: int

    @property
    def verdict(self) -> str:
        return verdict(self.diff, self.p_value)

    def text(self) -> str:
        return f"{self.diff:+.3f} (p={self.p_value:.2g})"


def verdict(diff: float, p_value: float, predicted_sign: int = 1) -> str:
    """reproduced / contradicted / not significant for a predicted direction (+1: diff > 0)."""
    if p_value < ALPHA and diff * predicted_sign > 0:
        return "reproduced"
    if p_value < ALPHA and diff * predicted_sign < 0:
        return "contradicted"
    return "not significant"


def paired_solve(base: pd.DataFrame, cand: pd.DataFrame) -> Paired:
    """McNemar on the per-rollout solves of two cells of one run."""
    b, c = base["solved"].to_numpy(bool), cand["solved"].to_numpy(bool)
    res = mcnemar(b, c)
    return Paired(float(b.mean()), float(c.mean()), float(c.mean() - b.mean()), res.p_value, res.n_pairs)


def interval_text(boot: BootstrapResult) -> str:
    """A paired bootstrap's mean difference and 95% interval, 3 significant digits: ``+d [+lo, +hi]``."""
    return f"{boot.diff:+.3g} [{boot.low:+.3g}, {boot.high:+.3g}]"


def paired_smoothness(base: pd.DataFrame, cand: pd.DataFrame) -> BootstrapResult:
    """Paired bootstrap 95% interval of mean(cand - base) of `SMOOTHNESS` (non-finite pairs dropped)."""
    return paired_bootstrap(base[SMOOTHNESS].to_numpy(float), cand[SMOOTHNESS].to_numpy(float), seed=0)


def paired_jerk(base: pd.DataFrame, cand: pd.DataFrame) -> str:
    """`paired_smoothness` as text: ``+d [+lo, +hi]``, with ``*`` when the interval excludes 0."""
    boot = paired_smoothness(base, cand)
    if boot.n_pairs == 0:
        return "–"
    star = "*" if boot.significant else ""
    return interval_text(boot) + star


def gap_change(a1: pd.DataFrame, b1: pd.DataFrame, a2: pd.DataFrame, b2: pd.DataFrame) -> str:
    """Bootstrap 95% interval of mean[(a1 - b1) - (a2 - b2)] over paired rollouts (solves as 0/1)."""
    a1_, b1_, a2_, b2_ = (x["solved"].to_numpy(float) for x in (a1, b1, a2, b2))
    boot = paired_bootstrap(a2_ - b2_, a1_ - b1_, seed=0)  # mean(candidate - baseline) = mean[(a1-b1) - (a2-b2)]
    star = "*" if boot.significant else ""
    return f"{boot.diff:+.3f} [{boot.low:+.3f}, {boot.high:+.3f}]{star}"
