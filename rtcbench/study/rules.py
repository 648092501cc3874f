"""The study's decision rules: issue #14's pre-registered `paper_ordering`, where soft and hard RTC can
differ at all (`soft_equals_hard`), and the multiple-comparison correction of the secondary claims (`holm`).

Verdicts: a claim is **reproduced** when its predicted direction holds with p < `ALPHA`, **contradicted**
when the opposite direction does, and **not significant** otherwise. Which p: the one pre-registered
headline test per level (`paper_ordering`: soft RTC against naive at d = 3 and d = 4) uses the raw McNemar
p; every other (secondary) claim of a level uses its Holm-adjusted p (`holm`, statsmodels' `multipletests`
over all secondary tests of the level). Each rule's printed text is built beside the code that checks it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pandas as pd

from rtcbench.paired import ALPHA, SMOOTHNESS_LABEL, interval_text, paired_smoothness, paired_solve
from rtcbench.study.runs import RunData
from rtcbench.tables import is_missing

RULE_SETUPS = ("d3", "d4")  # the setups `paper_ordering` judges
CORRECTION = "Holm"  # the name of `holm`'s method on the pages
NO_SOFT_BAND = "not applicable (no soft band: d >= H - s)"
ORDERING_RULE = (
    f"pre-registered headline, raw p: at each of d={' and d='.join(s[1:] for s in RULE_SETUPS)}, "
    f"rtc_exp - naive > 0 with McNemar p < {ALPHA}; rtc_exp's solve rate >= rtc_hard's (point estimates; "
    "judged only where a soft band exists, d < H - s); and the paired bootstrap 95% interval of rtc_exp - naive jerk "
    f"({SMOOTHNESS_LABEL}) entirely below 0. Reproduced when all hold, else not reproduced (failing parts listed)")


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (statsmodels), in the given order."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]


def _setup_of(cell: pd.Series) -> dict:
    """The cell's delay setup as stored in its cell_config ({} when it was not stored)."""
    cfg = json.loads(cell["cell_config"]) if isinstance(cell.get("cell_config"), str) else {}
    return cfg.get("setup") or {}


def _chunk_size(cell: pd.Series) -> int | None:
    """H: the cells table's chunk_size, else the cell_config's H."""
    h = cell.get("chunk_size")
    if is_missing(h):
        cfg = json.loads(cell["cell_config"]) if isinstance(cell.get("cell_config"), str) else {}
        h = cfg.get("H")
    return None if is_missing(h) else int(h)


def _forecast_and_step(cell: pd.Series) -> tuple[int, int] | None:
    """(the forecast d of every inference, the smallest execution horizon s) of the cell's setup; None when
    the forecast varies (a window or ewma forecaster, the oracle of a random delay). Without a stored setup,
    a sweep setup name ``dN`` means a fixed delay and forecast N with s = max(N, 1)."""
    setup = _setup_of(cell)
    if not setup:
        match = re.fullmatch(r"d(\d+)", str(cell["setup"]))
        return None if match is None else (int(match[1]), max(int(match[1]), 1))
    forecaster, profile, horizon = setup.get("forecaster") or {}, setup.get("profile") or {}, setup.get("horizon") or {}
    if forecaster.get("kind") == "fixed":
        d = forecaster.get("d")
    elif forecaster.get("kind") == "oracle" and profile.get("kind") == "fixed":
        d = profile.get("d")
    else:
        return None
    s = horizon.get("s") if horizon.get("kind") == "fixed_clock" else horizon.get("s_min")
    return None if d is None or s is None else (int(d), int(s))


def soft_equals_hard(cell: pd.Series | None) -> bool:
    """True when soft (``rtc_exp``) and hard (``rtc_hard``) RTC are the same computation in this cell's setup.

    The masks differ only on the soft band, the actions after the frozen prefix of d forecast steps and
    before the padding of the last s (`rtcbench.methods.weights`): positions d <= i < H - s. Every
    inference consumes at least the horizon's smallest step s, so with a constant forecast d >= H - s the
    band is empty at every inference. False when that cannot be told (no cell, no H, a varying forecast).
    """
    if cell is None:
        return False
    h, ds = _chunk_size(cell), _forecast_and_step(cell)
    return h is not None and ds is not None and ds[0] >= h - ds[1]


def no_soft_band(data: RunData, level: str, family: str = "") -> Callable[[str], bool]:
    """setup -> whether soft and hard RTC are the same computation there, judged on the level's ``rtc_exp``
    and ``rtc_hard`` cells (``FAMILY.rtc_exp`` and ``FAMILY.rtc_hard`` for an ablation family)."""
    prefix = f"{family}." if family else ""

    def check(setup: str) -> bool:
        return all(soft_equals_hard(data.cell(level, setup, f"{prefix}{m}")) for m in ("rtc_exp", "rtc_hard"))

    return check


def _ordering_setup(naive: pd.DataFrame, soft: pd.DataFrame, hard: pd.DataFrame, setup: str,
                    band: bool) -> tuple[dict, list[str]]:
    """The rule's three parts at one setup -> (evidence, failed parts)."""
    failed = []
    vs_naive = paired_solve(naive, soft)
    jerk = paired_smoothness(naive, soft)
    soft_rate, hard_rate = float(soft["solved"].mean()), float(hard["solved"].mean())
    evidence = {"soft_minus_naive": vs_naive, "soft_minus_hard": soft_rate - hard_rate if band else None,
                "jerk": jerk}
    if not (vs_naive.diff > 0 and vs_naive.p_value < ALPHA):
        failed.append(f"{setup}: soft - naive {vs_naive.text()}")
    if band and soft_rate < hard_rate:
        failed.append(f"{setup}: soft < hard ({soft_rate - hard_rate:+.3f})")
    if not (jerk.n_pairs > 0 and jerk.high < 0):
        failed.append(f"{setup}: jerk soft - naive {interval_text(jerk)} not < 0")
    return evidence, failed


def paper_ordering(rollouts: Callable[[str, str], pd.DataFrame | None],
                   no_band: Callable[[str], bool] = lambda setup: False) -> dict:
    """Issue #14's decision rule for "the paper's ordering holds", fixed before any cell it judges was run.

    ``rollouts(method, setup)`` gives one cell's per-rollout frame (None if the run lacks it); methods are
    ``naive``, ``rtc_exp`` (soft RTC) and ``rtc_hard``, setups ``d3`` and ``d4`` (s = d). ``no_band(setup)``
    says where soft and hard RTC are the same computation (`soft_equals_hard`). The ordering holds when all
    of (printed as `ORDERING_RULE`):

    1. soft RTC solves more than naive at d = 3 and at d = 4 (McNemar on paired rollouts, raw p < 0.05
       each: the pre-registered headline test, not corrected for multiple comparisons);
    2. soft RTC's solve rate is >= hard RTC's at d = 3 and at d = 4 (point estimates), judged only where a
       soft band exists (at d = s = 4 with H = 8 the two are one computation: not applicable);
    3. soft RTC's jerk (`rtcbench.paired.SMOOTHNESS`: mean |second difference| per step, used action dims)
       is lower than naive's at d = 3 and at d = 4: the paired bootstrap 95% interval of mean(soft - naive)
       lies below zero.

    Returns {verdict: "reproduced" | "not reproduced" | "incomplete", failed: [why, ...], evidence: {setup:
    {soft_minus_naive, soft_minus_hard (None: no soft band), jerk}}, text: the verdict followed by its
    failing parts in brackets, as the pages print it}.
    """
    failed, evidence = [], {}
    for setup in RULE_SETUPS:
        naive, soft, hard = rollouts("naive", setup), rollouts("rtc_exp", setup), rollouts("rtc_hard", setup)
        if naive is None or soft is None or hard is None:
            failed = [f"{setup}: missing cells"]
            return {"verdict": "incomplete", "failed": failed, "evidence": evidence,
                    "text": f"incomplete ({failed[0]})"}
        evidence[setup], why = _ordering_setup(naive, soft, hard, setup, band=not no_band(setup))
        failed += why
    if not failed:
        return {"verdict": "reproduced", "failed": failed, "evidence": evidence, "text": "reproduced"}
    return {"verdict": "not reproduced", "failed": failed, "evidence": evidence,
            "text": "not reproduced (" + "; ".join(failed) + ")"}


def ordering_evidence(decision: dict) -> str:
    """`paper_ordering`'s evidence per setup, as the claims table prints it."""
    def soft_hard(e: dict) -> str:
        return NO_SOFT_BAND if e["soft_minus_hard"] is None else f"{e['soft_minus_hard']:+.3f}"

    return ", ".join(f"{s}: soft - naive {e['soft_minus_naive'].text()}, soft - hard {soft_hard(e)}, "
                     f"jerk soft - naive {interval_text(e['jerk'])}" for s, e in decision["evidence"].items())
