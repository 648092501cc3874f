"""One run's page of the site: provenance, the cells table, the report's figures, existing videos and the
paired comparisons of each method against naive.

The figures are `rtcbench report`'s (`rtcbench.report.figures` and `.delays`, drawn from the report's own
queries, each a PNG shown on the page and an SVG beside it); the paired table is the report's
`paired_against_naive` (McNemar's exact test on the paired solves and a paired bootstrap interval of the
smoothness difference, both `rtcbench.paired`'s). Nothing here computes a statistic of its own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from rtcbench.paired import ALPHA, SMOOTHNESS, SMOOTHNESS_LABEL
from rtcbench.publish.html import Cell, Table, commit_text, href, render, text
from rtcbench.report.delays import plot_delay_survival
from rtcbench.report.figures import JERK_PANELS, plot_jerk, plot_rates, plot_solve_rate
from rtcbench.report.queries import sort_cells
from rtcbench.report.sections import paired_against_naive, schedule_groups
from rtcbench.report.style import split_family
from rtcbench.tables import MISSING, is_missing, p_value, pct, solve_ci

# Video files a run page shows, by suffix: an <img> for GIF (what `rtcbench render` writes by default), a
# <video> for the others.
VIDEO_SUFFIXES = (".gif", ".mp4", ".webm")


@dataclass(frozen=True)
class Figure:
    """A figure on a run page: its title, the PNG shown, the SVG linked, and what it shows."""

    title: str
    png: str
    svg: str
    caption: str


@dataclass(frozen=True)
class Video:
    """A video copied onto a run page: its file name (relative to the page) and whether it is a GIF."""

    name: str
    is_gif: bool


def _figure(paths: list[Path], title: str, caption: str) -> Figure:
    """A `Figure` from the files `rtcbench.report.style.save_figure` wrote (PNG first, then SVG)."""
    png, svg = paths
    return Figure(title, href(png.name), href(svg.name), caption)


def draw_figures(rows: dict[str, pd.DataFrame], out_dir: Path) -> list[Figure]:
    """Draw the report's figures of one run into `out_dir` from its report rows, under the conditions the
    report draws them: nothing without cells, the jerk boxes only with a finite jerk, the delay survival
    only with stored per-inference delays."""
    cells = sort_cells(rows["cells"])
    if cells.empty:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [_figure(plot_solve_rate(cells, out_dir / "solve_rate.png"), "Solve rate",
                       "Fraction of rollouts whose first episode reached the goal, with a Wilson 95% interval.")]
    jerk = rows["jerk"]
    if jerk[[column for column, _, _ in JERK_PANELS]].notna().any().any():
        dts = sorted({float(v) for v in cells["dt_ms"].dropna()})
        figures.append(_figure(plot_jerk(jerk, dts[0] if len(dts) == 1 else None, out_dir / "jerk.png"),
                               "Smoothness", f"Per-rollout jerk: {SMOOTHNESS_LABEL} (left) and the per-rollout "
                               "maximum of the same second difference (right); lower is smoother."))
    if not rows["delay_survival"].empty:
        figures.append(_figure(plot_delay_survival(rows["delay_survival"], out_dir / "delay_survival.png"),
                               "Delays", "P(delay > x) of the drawn delays per setup (solid) and of their forecasts "
                               "(dashed), asynchronous inferences, log scale."))
    groups = schedule_groups(sort_cells(rows["rates"]))
    figures.append(_figure(plot_rates(groups, out_dir / "violations_stalls.png"), "Violations and stalls",
                           "Violation, forecast-miss and over-forecast rates per inference, and the stall fraction "
                           "per control step, once per distinct delay schedule."))
    return figures


def _steps(cell: pd.Series, columns: tuple[str, ...]) -> str:
    """Stored delay percentiles in control steps, ``p50 / p95 / ...``; a dash when none was stored."""
    values = [cell[c] for c in columns]
    return MISSING if all(is_missing(v) for v in values) else " / ".join(text(v) for v in values)


def cells_table(cells: pd.DataFrame) -> Table:
    """The run's cells as stored: identity, solve rate with its Wilson interval, smoothness, mean return and
    the stored delay summary, in the report's order (level, setup, naive first)."""
    table = Table(["level", "setup", "method", "rollouts", "solve rate [Wilson 95%]", SMOOTHNESS, "mean return",
                   "delay d p50 / p95 / p99 / max (steps)", "forecast dhat p50 / p95 (steps)", "violation rate",
                   "stall fraction"])
    for _, cell in sort_cells(cells).iterrows():
        table.rows.append([Cell(cell["level"]), Cell(cell["setup"]), Cell(cell["method"]), Cell(text(cell["n_rollouts"])),
                           Cell(MISSING if is_missing(cell["solve_rate"]) else solve_ci(cell)),
                           Cell(text(cell[SMOOTHNESS])), Cell(text(cell["return_mean"])),
                           Cell(_steps(cell, ("d_p50", "d_p95", "d_p99", "d_max"))),
                           Cell(_steps(cell, ("dhat_p50", "dhat_p95"))), Cell(pct(cell["violation_rate"])),
                           Cell(pct(cell["stall_frac"]))])
    return table


def paired_table(rows: dict[str, pd.DataFrame]) -> tuple[Table | None, str]:
    """Each method against naive of its level and setup (the report's `paired_against_naive`) -> (the table,
    or None and why there is none)."""
    cells = sort_cells(rows["cells"])
    if cells.empty:
        return None, "No cell of this run has finished, so there is nothing to compare."
    if not any(split_family(m)[1] == "naive" for m in cells["method"]):
        return None, "This run has no naive cell, so there is no paired comparison against naive."
    paired = paired_against_naive(cells, rows["jerk"])
    if paired.empty:
        return None, "Every naive cell of this run is alone in its level and setup: there is nothing to pair it with."
    table = Table(["level", "setup", "method", "against", "pairs", "naive solve", "method solve",
                   "difference", "McNemar p", f"p < {ALPHA:g}", f"{SMOOTHNESS} difference [bootstrap 95%]"])
    for _, row in paired.iterrows():
        significant = row["p_value"] < ALPHA
        table.rows.append([Cell(row["level"]), Cell(row["setup"]), Cell(row["method"]), Cell(row["naive"]),
                           Cell(text(row["pairs"])), Cell(f"{row['naive_rate']:.3f}"), Cell(f"{row['method_rate']:.3f}"),
                           Cell(f"{row['diff']:+.3f}"), Cell(p_value(row["p_value"])),
                           Cell("yes" if significant else "no", css="significant" if significant else ""),
                           Cell(row["jerk"])])
    return table, ""


def provenance_table(run: pd.Series) -> Table:
    """Every field of the run's row in the ``runs`` table, as stored."""
    table = Table(["field", "value"])
    for key, value in run.items():
        table.rows.append([Cell(str(key)), Cell(text(value), css="pre" if key == "error" else "")])
    return table


def copy_videos(videos_dir: Path | None, run_id: str, out_dir: Path) -> list[Video]:
    """Copy the videos already rendered for this run (files in `videos_dir` named ``RUN_ID_*``, as `rtcbench
    render` names them by default) into ``out_dir/videos/`` -> the videos, by name. Nothing is rendered."""
    if videos_dir is None:
        return []
    found = sorted(p for p in videos_dir.iterdir()
                   if p.is_file() and p.name.startswith(f"{run_id}_") and p.suffix.lower() in VIDEO_SUFFIXES)
    if found:
        (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    for path in found:
        shutil.copy2(path, out_dir / "videos" / path.name)
    return [Video(href("videos", p.name), p.suffix.lower() == ".gif") for p in found]


def run_summary(run: pd.Series, cells: pd.DataFrame) -> dict[str, str]:
    """The run's identity line as text: scenario version, start, commit, rollouts per cell, cells done of
    planned and status (the index shows the same fields)."""
    rollouts = sorted({int(v) for v in cells["n_rollouts"].dropna()})
    return {"run_id": str(run["run_id"]), "scenario": str(run["scenario"]),
            "version": text(run["scenario_version"]), "started": text(run["started_at"]),
            "commit": commit_text(run["git_commit"], run["git_dirty"]),
            "rollouts": ", ".join(map(str, rollouts)) or MISSING,
            "cells": f"{len(cells)} of {text(run['n_cells_planned'])}", "status": str(run["status"])}


def write_run_page(env: jinja2.Environment, run: pd.Series, cells: pd.DataFrame, rows: dict[str, pd.DataFrame],
                   page: Path, *, root: str, scenario_href: str, videos_dir: Path | None) -> Path:
    """Draw the run's figures beside `page`, copy its videos, and render the page -> its path. `root` is the
    relative path from the page to the site's top folder."""
    out_dir = page.parent
    paired, paired_note = paired_table(rows)
    return render(env, "run.html", page, root=root, title=f"run {run['run_id']}", run=run_summary(run, cells),
                  error=None if is_missing(run["error"]) else str(run["error"]), scenario_href=scenario_href,
                  cells=cells_table(cells), figures=draw_figures(rows, out_dir), paired=paired,
                  paired_note=paired_note, alpha=ALPHA, smoothness=SMOOTHNESS, smoothness_label=SMOOTHNESS_LABEL,
                  videos=copy_videos(videos_dir, str(run["run_id"]), out_dir), provenance=provenance_table(run))
