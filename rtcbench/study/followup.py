"""Part 4 of the study page: follow-up runs (``--extra RUN_ID``, any scenario), every cell against the
run's `naive` cell of the same setup."""

from __future__ import annotations

from rtcbench.paired import SMOOTHNESS, SMOOTHNESS_LABEL, paired_jerk, paired_solve
from rtcbench.study.runs import RunData
from rtcbench.tables import MISSING, fmt, solve_ci


def _run_rows(data: RunData) -> list[str]:
    """The table of one follow-up run: each cell, and against naive of its setup where there is one."""
    rows = ["| level | setup | method | solve [95% CI] | - naive | jerk mean d2 | jerk - naive | d p95 / p99 | "
            "forecast miss / over | violation |", "|" + "---|" * 10]
    for _, cell in data.cells.iterrows():
        level, setup, method = cell["level"], cell["setup"], cell["method"]
        naive = data.rollouts(level, setup, "naive")
        mine = data.rollouts(level, setup, method)
        versus = jerk = MISSING
        if naive is not None and method != "naive":
            versus, jerk = paired_solve(naive, mine).text(), paired_jerk(naive, mine)
        rows.append(f"| {level} | {setup} | {method} | {solve_ci(cell)} | {versus} | {fmt(cell[SMOOTHNESS])} | "
                    f"{jerk} | {fmt(cell['d_p95'])} / {fmt(cell['d_p99'])} | "
                    f"{cell['forecast_miss_rate']:.3f} / {cell['over_forecast_rate']:.3f} | "
                    f"{cell['violation_rate']:.3f} |")
    return rows


def extra_section(extras: list[RunData]) -> list[str]:
    """Any other complete run: its cells, each against the run's `naive` cell of the same setup (McNemar
    for solves, paired bootstrap for jerk, `SMOOTHNESS`). Inside a run every method of a setup shares the schedule and
    env seeds, so these are paired comparisons."""
    if not extras:
        return []
    lines = ["## 4. Follow-up runs", "",
             "Runs added to the study with `--extra RUN_ID`; each method against `naive` of the same setup and run "
             f"(McNemar p; jerk, {SMOOTHNESS_LABEL}: paired bootstrap 95%, * = excludes 0).", ""]
    for data in extras:
        run = data.runs[0]
        lines += [f"### {run['scenario']} (run `{run['run_id']}`)", ""]
        lines += [*_run_rows(data), ""]
    return lines
