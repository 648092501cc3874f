"""The claims of Black et al. (2025) judged on one level of the constant-delay sweep: the table under part 1
of the study page.

Four **secondary** claims, each a set of paired McNemar tests between two methods at some delays and a
verdict over them; and the **headline**, issue #14's pre-registered `paper_ordering`. The secondary tests
of a level form one family: their p-values are adjusted together with Holm's method
(`rtcbench.study.rules.holm`) and their verdicts use the adjusted p; the page shows raw and adjusted p. The
headline keeps its raw p at alpha 0.05, as registered. A soft RTC against hard RTC test where the two are
one computation (`rtcbench.study.rules.soft_equals_hard`) is not run: it is printed as not applicable.

Each claim's printed rule is written beside the function that judges it, and says what that function
checks: "significantly" means Holm-adjusted p < 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rtcbench.paired import ALPHA, Paired, paired_solve, verdict
from rtcbench.study.rules import (
    CORRECTION,
    NO_SOFT_BAND,
    ORDERING_RULE,
    holm,
    no_soft_band,
    ordering_evidence,
    paper_ordering,
)
from rtcbench.study.runs import RunData

ORDERING_CLAIM = "the paper's ordering as a whole (issue #14, `paper_ordering`)"


@dataclass(frozen=True)
class SecondaryTest:
    """One secondary paired test of a claim: ``label`` heads its evidence, ``paired`` is None where the test
    is not applicable (soft against hard RTC without a soft band); ``p_adjusted`` is set by the correction."""

    key: str
    label: str
    paired: Paired | None
    p_adjusted: float = math.nan

    @property
    def verdict(self) -> str:
        """reproduced / contradicted / not significant for diff > 0, on the adjusted p."""
        return verdict(self.paired.diff, self.p_adjusted)

    def text(self) -> str:
        """The evidence: ``LABEL +diff (p=raw, Holm p=adjusted)``, or why the test was not run."""
        if self.paired is None:
            return f"{self.label} {NO_SOFT_BAND}"
        p = self.paired
        return f"{self.label} {p.diff:+.3f} (p={p.p_value:.2g}, {CORRECTION} p={self.p_adjusted:.2g})"


@dataclass
class Claim:
    """A secondary claim: its name, its rule as printed, its tests and the function that judges them
    ({key: test} of the applicable tests -> verdict)."""

    name: str
    rule: str
    judge: Callable[[dict[str, SecondaryTest]], str]
    tests: list[SecondaryTest] = field(default_factory=list)

    def verdict(self) -> str:
        """The judge's verdict on the applicable tests; not applicable when none of its tests applies."""
        run = {t.key: t for t in self.tests if t.paired is not None}
        if not run and self.tests:
            return NO_SOFT_BAND
        return self.judge(run)

    def row(self) -> str:
        """The claim's row of the claims table: claim | rule | evidence | verdict."""
        evidence = ", ".join(t.text() for t in self.tests)
        return f"| {self.name} | {self.rule} | {evidence} | {self.verdict()} |"


def _pair(data: RunData, level: str, setup: str, base: str, cand: str) -> Paired | None:
    """McNemar of cand against base in one setup of one level; None if either cell is missing."""
    b, c = data.rollouts(level, setup, base), data.rollouts(level, setup, cand)
    return None if b is None or c is None else paired_solve(b, c)


def _judge_robust(tests: dict[str, SecondaryTest]) -> str:
    beaten = [m for m, t in tests.items() if t.verdict == "contradicted"]
    if beaten:
        return "contradicted (" + ", ".join(beaten) + " better)"
    if "naive" in tests and tests["naive"].verdict == "reproduced":
        return "reproduced"
    return "not significant"


def robust_claim(data: RunData, level: str, methods: list[str], no_band: Callable[[str], bool]) -> Claim | None:
    """C1: soft RTC is the most robust as d grows."""
    others = [m for m in ("naive", "rtc_hard", "bid16", "te") if m in methods]
    if "rtc_exp" not in methods or not others:
        return None
    rule = (f"at d=4, rtc_exp - m for each m of {', '.join(others)}: contradicted if rtc_exp - m < 0 significantly "
            "for any m; else reproduced if rtc_exp - naive > 0 significantly; else not significant")
    claim = Claim("soft RTC (exp) is the most robust as d grows", rule, _judge_robust)
    for m in others:
        if m == "rtc_hard" and no_band("d4"):
            claim.tests.append(SecondaryTest(m, f"vs {m}", None))
        elif (p := _pair(data, level, "d4", m, "rtc_exp")) is not None:
            claim.tests.append(SecondaryTest(m, f"vs {m}", p))
    return claim


def _judge_hard(tests: dict[str, SecondaryTest]) -> str:
    small = [t for s, t in tests.items() if s in ("d1", "d2")]
    large = [t for s, t in tests.items() if s in ("d3", "d4")]
    if any(t.verdict == "contradicted" for t in tests.values()):
        return "contradicted"
    if any(t.verdict == "reproduced" for t in small):
        largest_small = max(t.paired.diff for t in small)
        return ("reproduced" if largest_small >= max((t.paired.diff for t in large), default=-1.0)
                else "partly (soft ahead, but more at large d)")
    if any(t.verdict == "reproduced" for t in large):
        return "partly (soft ahead only at large d)"
    return "not significant"


def hard_claim(data: RunData, level: str, methods: list[str], no_band: Callable[[str], bool]) -> Claim | None:
    """C2: hard masking trails soft masking, mostly at small d (judged only where a soft band exists)."""
    if not {"rtc_exp", "rtc_hard"} <= set(methods):
        return None
    rule = ("rtc_exp - rtc_hard at each d of 1-4 with a soft band (d < H - s): contradicted if < 0 significantly "
            "at any d; else reproduced if > 0 significantly at d=1 or 2 and its largest point estimate is at "
            "d <= 2; partly if > 0 significantly at d=1 or 2 but larger at d >= 3, or only at d >= 3; else not "
            "significant")
    claim = Claim("hard masking trails soft, mostly at small d", rule, _judge_hard)
    for s in ("d1", "d2", "d3", "d4"):
        if no_band(s):
            claim.tests.append(SecondaryTest(s, f"{s}:", None))
        elif (p := _pair(data, level, s, "rtc_hard", "rtc_exp")) is not None:
            claim.tests.append(SecondaryTest(s, f"{s}:", p))
    return claim


def te_claim(data: RunData, level: str, methods: list[str]) -> Claim | None:
    """C3: temporal ensembling is poor even at d = 0."""
    if not {"te", "naive"} <= set(methods):
        return None
    p = _pair(data, level, "d0", "te", "naive")
    if p is None:
        return None
    rule = ("naive - te at d=0: reproduced if > 0 significantly, contradicted if < 0 significantly, else not "
            "significant")
    return Claim("temporal ensembling is poor even at d=0", rule, lambda tests: tests["d0"].verdict,
                 [SecondaryTest("d0", "naive - te", p)])


def _judge_ttrtc(tests: dict[str, SecondaryTest]) -> str:
    verdicts = [t.verdict for t in tests.values()]
    return ("reproduced" if verdicts and all(x == "reproduced" for x in verdicts)
            else "contradicted" if "contradicted" in verdicts
            else "partly" if "reproduced" in verdicts else "not significant")


def ttrtc_claim(data: RunData, level: str, methods: list[str]) -> Claim | None:
    """C4: training-time RTC beats inference-time RTC at d >= 2."""
    if not {"ttrtc", "rtc_exp"} <= set(methods):
        return None
    rule = ("ttrtc - rtc_exp at each of d=2, 3, 4: reproduced if > 0 significantly at every one; else "
            "contradicted if < 0 significantly at any; else partly if > 0 significantly at some; else not "
            "significant")
    claim = Claim("training-time RTC beats inference-time RTC at d >= 2", rule, _judge_ttrtc)
    for s in ("d2", "d3", "d4"):
        if (p := _pair(data, level, s, "rtc_exp", "ttrtc")) is not None:
            claim.tests.append(SecondaryTest(s, f"{s}:", p))
    return claim


def correct(claims: list[Claim]) -> int:
    """Adjust the p-values of every applicable test of `claims` together (`holm`), in place -> their number."""
    tests = [(claim, i) for claim in claims for i, t in enumerate(claim.tests) if t.paired is not None]
    adjusted = holm([claim.tests[i].paired.p_value for claim, i in tests])
    for (claim, i), p in zip(tests, adjusted, strict=True):
        claim.tests[i] = replace(claim.tests[i], p_adjusted=p)
    return len(tests)


def _ordering_row(data: RunData, level: str, methods: list[str], no_band: Callable[[str], bool]) -> str | None:
    """The headline: issue #14's pre-registered rule (also the modality ablation's), on raw p."""
    if not {"naive", "rtc_exp", "rtc_hard"} <= set(methods):
        return None
    decision = paper_ordering(lambda method, setup: data.rollouts(level, setup, method), no_band)
    return f"| {ORDERING_CLAIM} | {ORDERING_RULE} | {ordering_evidence(decision)} | {decision['text']} |"


def sweep_claims(data: RunData, level: str, methods: list[str]) -> list[str]:
    """The claims table of one level of the constant-delay sweep, with each claim's rule and evidence."""
    no_band = no_soft_band(data, level)
    claims = [c for c in (robust_claim(data, level, methods, no_band), hard_claim(data, level, methods, no_band),
                          te_claim(data, level, methods), ttrtc_claim(data, level, methods)) if c is not None]
    n_tests = correct(claims)
    headline = _ordering_row(data, level, methods, no_band)
    intro = (f"Claims of Black et al. (2025), tested on this level (McNemar on paired rollouts, alpha {ALPHA}). "
             f"Secondary claims: their {n_tests} tests are corrected for multiple comparisons with {CORRECTION}'s "
             f"method (statsmodels `multipletests`); each shows its raw p and its {CORRECTION} p, and "
             f"\"significantly\" means {CORRECTION} p < {ALPHA}.")
    if headline is not None:
        intro += (" The last row is the pre-registered headline test (issue #14, fixed before the runs), judged "
                  f"on raw p < {ALPHA}, not corrected.")
    rows = ["| claim | rule | evidence | verdict |", "|---|---|---|---|", *(c.row() for c in claims)]
    if headline is not None:
        rows.append(headline)
    return [intro, "", *rows, ""]
