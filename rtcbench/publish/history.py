"""A scenario's page of the site: each cell's solve rate across the runs of that scenario, in the order the
runs were started (the file records each run's commit, not when the commit was made).

A cell (level x method x setup) is comparable across runs only while its ``comparability_key`` stays the
same (`rtcbench compare` pairs cells by it). A point whose key differs from the cell's key in the newest run
that has it is marked *not comparable*: in the table it says so, and in the chart it is a hollow marker that
no line runs through (a line joins only consecutive comparable points).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rtcbench.publish.html import Cell, Table, commit_text, file_slug, href, text
from rtcbench.report.style import method_styles, ordered_methods, save_figure
from rtcbench.tables import MISSING, is_missing, pyplot, solve_ci

NOT_COMPARABLE = "not comparable"
# Markers of the delay setups in a history chart (the colour is the method's, as in the report).
SETUP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def history_points(runs: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, cell) of one scenario: the run's place in start order (``position``, from 0), the
    cell's solve rate and interval, and ``comparable`` (its key equals the key of the same cell in the newest
    run that has it)."""
    order = runs.sort_values(["started_at", "run_id"]).reset_index(drop=True)
    position = pd.DataFrame({"run_id": order["run_id"], "position": np.arange(len(order))})
    points = cells.merge(position, on="run_id").sort_values("position")
    newest_key = points.groupby(["level", "method", "setup"])["comparability_key"].transform("last")
    return points.assign(comparable=points["comparability_key"] == newest_key).reset_index(drop=True)


def _cell_columns(points: pd.DataFrame) -> list[tuple[str, str]]:
    """The (setup, method) cells of one level: setups as stored, methods in the report's order."""
    setups = list(dict.fromkeys(points["setup"]))
    methods = ordered_methods(points["method"])
    present = set(zip(points["setup"], points["method"], strict=True))
    return [(s, m) for s in setups for m in methods if (s, m) in present]


def _run_label(run: pd.Series) -> str:
    """A run's label on a chart's x axis: its commit (or its id where no commit was recorded)."""
    commit = commit_text(run["git_commit"], run["git_dirty"])
    return commit if commit != MISSING else str(run["run_id"])


def level_table(runs: pd.DataFrame, points: pd.DataFrame, run_href) -> Table:
    """One level's history: a row per run (start order) that has a cell of the level, a column per cell with
    its solve rate and Wilson interval, marked when not comparable. `run_href(run_id)` links a run's page."""
    columns = _cell_columns(points)
    table = Table(["run", "started (UTC)", "commit", "scenario version", "status",
                   *(f"{setup} / {method}" for setup, method in columns)])
    by_run = {run_id: sub.set_index(["setup", "method"]) for run_id, sub in points.groupby("run_id", sort=False)}
    for _, run in runs.sort_values(["started_at", "run_id"]).iterrows():
        if run["run_id"] not in by_run:
            continue
        sub = by_run[run["run_id"]]
        row = [Cell(str(run["run_id"]), run_href(run["run_id"])), Cell(text(run["started_at"])),
               Cell(commit_text(run["git_commit"], run["git_dirty"])), Cell(text(run["scenario_version"])),
               Cell(str(run["status"]), css=f"status-{run['status']}")]
        for key in columns:
            if key not in sub.index:
                row.append(Cell(MISSING))
                continue
            cell = sub.loc[key]
            shown = MISSING if is_missing(cell["solve_rate"]) else solve_ci(cell)
            row.append(Cell(shown) if cell["comparable"] else
                       Cell(f"{shown} ({NOT_COMPARABLE})", css="not-comparable"))
        table.rows.append(row)
    return table


def plot_level_history(runs: pd.DataFrame, points: pd.DataFrame, level: str, out: Path) -> list[Path]:
    """Solve rate per run of each cell of one level, runs in start order: comparable points joined by a line
    with their Wilson interval, not comparable points hollow and unjoined -> the PNG and SVG written."""
    plt = pyplot()
    order = runs.sort_values(["started_at", "run_id"]).reset_index(drop=True)
    shown = sorted(set(points["position"]))
    columns = _cell_columns(points)
    styles = method_styles(points["method"])
    setups = list(dict.fromkeys(s for s, _ in columns))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(shown) + 4), 4.6), layout="constrained")
    for setup, method in columns:
        sub = points[(points["setup"] == setup) & (points["method"] == method)].set_index("position")
        color, marker = styles[method].color, SETUP_MARKERS[setups.index(setup) % len(SETUP_MARKERS)]
        comparable = sub[sub["comparable"]].reindex(shown)  # NaN where absent or not comparable: the line breaks
        rate = comparable["solve_rate"].to_numpy(float)
        err = np.clip(np.vstack([rate - comparable["solve_ci_low"].to_numpy(float),
                                 comparable["solve_ci_high"].to_numpy(float) - rate]), 0.0, None)
        ax.errorbar(shown, rate, yerr=err, color=color, marker=marker, ms=5, lw=1.4, capsize=2, elinewidth=0.7,
                    label=f"{method} / {setup}")
        other = sub[~sub["comparable"]]
        if len(other):
            ax.plot(other.index.to_numpy(), other["solve_rate"].to_numpy(float), ls="none", marker=marker, ms=7,
                    markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.3)
    if not points["comparable"].all():
        ax.plot([], [], ls="none", marker="o", markerfacecolor="none", markeredgecolor="0.3",
                label=f"hollow: {NOT_COMPARABLE} (key differs from the newest run's)")
    ax.set_xticks(shown, [_run_label(order.iloc[p]) for p in shown], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(min(shown) - 0.5, max(shown) + 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("run (commit), in the order the runs started")
    ax.set_ylabel("solve rate (Wilson 95% interval)")
    ax.set_title(f"{level}: solve rate per run", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7.5, frameon=False)
    return save_figure(fig, out)


def scenario_levels(runs: pd.DataFrame, cells: pd.DataFrame, out_dir: Path, run_href) -> list[dict]:
    """Per level of one scenario: its history table and its chart (drawn into `out_dir`, linked relative to
    the folder above it) -> [{level, table, png, svg}] for the page."""
    points = history_points(runs, cells)
    out_dir.mkdir(parents=True, exist_ok=True)
    levels = []
    for level in dict.fromkeys(points["level"]):
        sub = points[points["level"] == level]
        png, svg = plot_level_history(runs, sub, level, out_dir / f"history_{file_slug(level)}.png")
        levels.append({"level": level, "table": level_table(runs, sub, run_href),
                       "png": href(out_dir.name, png.name), "svg": href(out_dir.name, svg.name),
                       "not_comparable": int((~sub["comparable"]).sum())})
    return levels
