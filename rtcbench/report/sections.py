"""Computed parts of the report page: the findings, the paired table against naive, the distinct delay
schedules of a run and its provenance table. Each returns Markdown lines or a frame; nothing is judged by
hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rtcbench.paired import SMOOTHNESS, SMOOTHNESS_LABEL, paired_jerk, paired_solve
from rtcbench.report.figures import RATE_COLUMNS
from rtcbench.report.queries import sort_cells
from rtcbench.report.style import ordered_methods, split_family
from rtcbench.tables import fmt, is_missing, md_table, p_value, solve_ci


def median_jerk(rollouts: pd.DataFrame, level: str, setup: str, methods) -> dict[str, float]:
    """Median over rollouts of `SMOOTHNESS` per method of one level and setup (the box plots' middle line),
    in the order of `methods`; methods without a finite value are left out."""
    sub = rollouts[(rollouts["level"] == level) & (rollouts["setup"] == setup)]
    out = {}
    for method in methods:
        values = sub[sub["method"] == method][SMOOTHNESS].dropna()
        if len(values):
            out[method] = float(values.median())
    return out


def _solve_finding(head: str, sub: pd.DataFrame) -> str:
    """The highest and lowest solve rate of one level and setup, with their intervals."""
    best = sub.loc[sub["solve_rate"].idxmax()]
    worst = sub.loc[sub["solve_rate"].idxmin()]
    if best["solve_rate"] == worst["solve_rate"]:
        return f"{head}: all {len(sub)} methods solve {solve_ci(best)}"
    overlap = best["solve_ci_low"] <= worst["solve_ci_high"]
    return (f"{head}: highest solve rate {best['method']} {solve_ci(best)}, lowest {worst['method']} "
            f"{solve_ci(worst)}" + (" (the intervals overlap)" if overlap else ""))


def findings(cells: pd.DataFrame, rollouts: pd.DataFrame) -> list[str]:
    """One line per (level, setup): solve rates across methods with intervals, and the smoothest and roughest
    method by the median per-rollout jerk (`SMOOTHNESS`, as the box plots show it); computed, not judged."""
    lines = []
    for (level, setup), sub in cells.groupby(["level", "setup"], sort=False):
        head = f"- **{level} / {setup}**"
        medians = median_jerk(rollouts, level, setup, sub["method"])
        if len(sub) < 2:
            row = sub.iloc[0]
            jerk = fmt(medians.get(row["method"]))
            lines.append(f"{head}: {row['method']} solves {solve_ci(row)}, median jerk {jerk}.")
            continue
        text = _solve_finding(head, sub)
        if len(medians) >= 2:
            smooth, rough = min(medians, key=medians.get), max(medians, key=medians.get)
            text += (f"; smoothest {smooth} (median jerk {fmt(medians[smooth])}), roughest {rough} "
                     f"({fmt(medians[rough])})")
        lines.append(text + ".")
    lines.append("")
    lines.append(f"Jerk here is the median over rollouts of the {SMOOTHNESS_LABEL} (the middle line of the left "
                 "boxes under \"Smoothness\"). These are per-cell summaries. Whether a method differs from naive "
                 "inside this run is tested on the paired rollouts below (\"Paired against naive\"); whether two "
                 "runs differ is decided by `rtcbench compare`.")
    return lines


def _naive_label(method: str) -> str:
    """The naive cell a method is paired with: ``naive``, or ``FAMILY.naive`` for a ``FAMILY.METHOD`` label."""
    family, _ = split_family(method)
    return f"{family}.naive" if family else "naive"


def paired_against_naive(cells: pd.DataFrame, rollouts: pd.DataFrame) -> pd.DataFrame:
    """Each method against `naive` (of its family, for ``FAMILY.METHOD`` labels) in the same level and setup,
    paired by rollout index: rollout b of every cell of a run shares its env seed and, inside a setup, its
    delay schedule. Solves: McNemar's exact test; jerk (`SMOOTHNESS`): paired bootstrap 95% interval of
    mean(method - naive). Both are `rtcbench.paired`'s."""
    by_cell = {key: frame for key, frame in rollouts.groupby(["level", "setup", "method"], sort=False)}
    rows = []
    for _, cell in sort_cells(cells).iterrows():
        level, setup, method = cell["level"], cell["setup"], cell["method"]
        naive = _naive_label(method)
        if (split_family(method)[1] == "naive" or (level, setup, naive) not in by_cell
                or (level, setup, method) not in by_cell):
            continue
        both = by_cell[(level, setup, naive)].merge(by_cell[(level, setup, method)], on="rollout",
                                                    suffixes=("_base", "_cand")).sort_values("rollout")
        if both.empty:
            continue
        base_frame = pd.DataFrame({"solved": both["solved_base"].astype(bool), SMOOTHNESS: both[f"{SMOOTHNESS}_base"]})
        cand_frame = pd.DataFrame({"solved": both["solved_cand"].astype(bool), SMOOTHNESS: both[f"{SMOOTHNESS}_cand"]})
        solve = paired_solve(base_frame, cand_frame)
        rows.append({"level": level, "setup": setup, "method": method, "naive": naive, "pairs": solve.n,
                     "naive_rate": solve.base_rate, "method_rate": solve.cand_rate, "diff": solve.diff,
                     "p_value": solve.p_value, "jerk": paired_jerk(base_frame, cand_frame)})
    return pd.DataFrame(rows)


def paired_section(cells: pd.DataFrame, rollouts: pd.DataFrame) -> list[str]:
    """"Paired against naive": the table of `paired_against_naive`, or why there is none."""
    lines = ["## Paired against naive", ""]
    has_naive = any(split_family(m)[1] == "naive" for m in cells["method"])
    if not has_naive:
        return lines + ["This run has no `naive` cell, so there is no within-run paired comparison against naive.", ""]
    table = paired_against_naive(cells, rollouts)
    if table.empty:
        return lines + ["Every `naive` cell of this run is alone in its level and setup, so there is nothing to pair "
                        "it with.", ""]
    table["naive_solve"] = table["naive_rate"].map(lambda v: f"{v:.3f}")
    table["method_solve"] = table["method_rate"].map(lambda v: f"{v:.3f}")
    table["difference"] = table["diff"].map(lambda v: f"{v:+.3f}")
    return lines + [
        "Each method against `naive` of the same level and setup"
        + (" (and, for `FAMILY.METHOD` labels, the same family)" if any(split_family(m)[0] for m in cells["method"])
           else "")
        + ", rollout by rollout: rollout b of every cell shares its env seed and, inside a setup, its delay "
        "schedule. Solve-rate difference (method - naive) with McNemar's exact two-sided p on the paired solves; "
        f"jerk ({SMOOTHNESS_LABEL}): mean difference over rollouts (method - naive) with a paired bootstrap "
        "95% interval (* = the interval excludes 0). The p-values are not corrected for multiple comparisons.",
        "",
        md_table(table, [("level", "level"), ("setup", "setup"), ("method", "method"), ("naive", "against"),
                         ("pairs", "pairs"), ("naive_solve", "naive solve"), ("method_solve", "method solve"),
                         ("difference", "difference"), ("p_value", "McNemar p", p_value),
                         ("jerk", "jerk mean d2 difference [95% CI]", str)]),
        "",
    ]


def schedule_groups(rates: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct schedule: all methods of a setup share it (except `sync`, whose world pauses), so the
    rates are shown once per setup; a setup whose cells disagree gets one row per group of methods."""
    rows = []
    all_methods = set(rates["method"])
    for setup, sub in rates.groupby("setup", sort=False):
        key = [tuple("–" if is_missing(v) else f"{float(v):.9f}" for v in row)
               for row in sub[list(RATE_COLUMNS)].itertuples(index=False)]
        parts = [sub[[k == one for k in key]] for one in dict.fromkeys(key)]
        parts.sort(key=lambda g: -g["method"].nunique())
        for g in parts:
            methods = ordered_methods(g["method"])
            who = "all" if set(methods) == all_methods else ", ".join(methods)
            label = setup if len(parts) == 1 else f"{setup}\n({', '.join(methods) if len(methods) <= 2 else 'others'})"
            rows.append({"setup": setup, "label": label, "methods": who, "levels": ", ".join(dict.fromkeys(g["level"])),
                         **{c: g.iloc[0][c] for c in (*RATE_COLUMNS, "mean_exec_horizon")}})
    return pd.DataFrame(rows)


def provenance_table(run: pd.Series, columns) -> list[str]:
    """The run's provenance row (run.sql) as a field | value table; unrecorded fields listed below it."""
    shown, missing = [], []
    for key in columns:
        if key == "error":
            continue
        value = run[key]
        if is_missing(value):
            missing.append(key)
            continue
        shown.append(f"| {key} | {fmt(value) if not isinstance(value, (float, np.floating)) else f'{float(value):,.1f}'} |")
    lines = ["| field | value |", "|---|---|", *shown]
    if missing:
        lines += ["", "Not recorded for this run (unknown, or not set): " + ", ".join(f"`{k}`" for k in missing) + "."]
    return lines
