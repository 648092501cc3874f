"""`rtcbench report`: the Markdown page (``report.md``) and its figures for one run, section by section.

The page is built from the queries of `rtcbench.report.queries` alone: what the run measures, findings,
solve rate, smoothness with the paired tests against naive, delays, violations and stalls, cost and
provenance.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from rtcbench.errors import make_output_dir, write_text_atomically
from rtcbench.paired import SMOOTHNESS_LABEL
from rtcbench.report.delays import delay_table, plot_delay_survival
from rtcbench.report.figures import JERK_PANELS, plot_jerk, plot_rates, plot_solve_rate
from rtcbench.report.queries import REPORTS_DIR, run_queries, sort_cells
from rtcbench.report.sections import findings, paired_section, provenance_table, schedule_groups
from rtcbench.tables import MISSING, fmt, is_missing, md_table, ms, pct, solve_ci

WHAT_THIS_MEASURES = (
    "Each **cell** is one level x one method x one delay setup. Every rollout runs a flow-matching chunk policy "
    "in closed loop on a Kinetix level while inference delays are replayed from the setup's delay schedule: "
    "an inference started at step tau delivers its chunk d steps later, and meanwhile the robot keeps executing "
    "the old chunk. All methods of a setup see the same env seeds and the same delays (common random numbers), "
    "so differences between methods are paired. Only the first episode of each rollout counts. Methods are "
    "listed naive first, then in the order of Black et al. (2025); every figure is also written as an SVG.")


def _compile_s(value) -> str:
    """Compile seconds of a cell; "cached" when it reused an episode compiled for an earlier cell."""
    if is_missing(value):
        return MISSING
    return "cached" if float(value) == 0 else f"{float(value):.1f}"


def _header(run: pd.Series, run_id: str, cells: pd.DataFrame) -> list[str]:
    """Title, the run's identity and status, and what the page measures."""
    status_note = "" if run["status"] == "complete" else (
        f" **This run did not complete** ({run['status']}"
        + (f": {str(run['error']).strip().splitlines()[-1]}" if isinstance(run["error"], str) and run["error"] else "")
        + "); only its finished cells are shown.")
    n_roll = sorted({int(v) for v in cells["n_rollouts"]}) if len(cells) else []
    device = ", ".join(str(run[k]) for k in ("jax_backend", "device_kind") if not is_missing(run[k])) or "unknown device"
    version = "unknown" if is_missing(run["scenario_version"]) else fmt(run["scenario_version"])
    return [
        f"# rtcbench report: {run['scenario']} (run `{run_id}`)",
        "",
        f"Scenario `{run['scenario']}` version {version}, config hash `{str(run['config_hash'])[:16]}`, "
        f"status **{run['status']}**, {len(cells)} of {int(run['n_cells_planned'])} cells, "
        f"{', '.join(map(str, n_roll)) or '0'} rollouts per cell, on {device}.{status_note}",
        "",
        "## What this measures",
        "",
        WHAT_THIS_MEASURES,
        "",
    ]


def _solve_rate_section(cells: pd.DataFrame, out_dir: Path) -> list[str]:
    plot_solve_rate(cells, out_dir / "solve_rate.png")
    return [
        "## Solve rate",
        "",
        "![solve rate per method and setup](solve_rate.png)",
        "",
        "Fraction of rollouts whose first episode reached the goal, with a Wilson 95% interval.",
        "",
        md_table(cells.assign(solve=cells.apply(solve_ci, axis=1)), [
            ("level", "level"), ("setup", "setup"), ("method", "method"), ("n_rollouts", "n"),
            ("solve", "solve rate [95% CI]"), ("return_mean", "mean return"), ("length_mean", "mean length"),
            ("solves_per_1000_wall_steps", "solves / 1000 wall steps")]),
        "",
    ]


def _smoothness_section(cells: pd.DataFrame, jerk: pd.DataFrame, out_dir: Path) -> list[str]:
    """The jerk box plots and table, then the paired tests against naive."""
    dts = sorted({float(v) for v in cells["dt_ms"].dropna()})
    if jerk[[column for column, _, _ in JERK_PANELS]].notna().any().any():
        plot_jerk(jerk, dts[0] if len(dts) == 1 else None, out_dir / "jerk.png")
        lines = ["## Smoothness", "", "![jerk per method and setup](jerk.png)", ""]
    else:
        lines = ["## Smoothness", "", "No finite per-rollout jerk was stored (episodes too short).", ""]
    return lines + [
        "Per rollout, on the executed actions a_t of the first episode, over the level's used action dimensions "
        "(in its action units): the step change ||a_t - a_{t-1}|| (d1) and the second difference "
        "||a_t - 2a_{t-1} + a_{t-2}|| (d2), each as its mean per executed step and its largest value. The "
        f"smoothness statistic of this report is **jerk = mean d2** ({SMOOTHNESS_LABEL}): the left boxes, the "
        "findings (median over rollouts, the boxes' middle line) and the paired tests below. The largest d2 "
        "(right boxes) is the jerk proxy of Black et al. (2025); it grows with the episode's length, so a method "
        "whose episodes last longer looks rougher for that alone. Boxes show the spread over rollouts (median "
        "line, quartiles, whiskers at 1.5 IQR); the table gives the mean over rollouts.",
        "",
        md_table(cells, [("level", "level"), ("setup", "setup"), ("method", "method"), ("jerk_max_d1", "max d1"),
                         ("jerk_max_d2", "max d2"), ("jerk_mean_d1", "mean d1"), ("jerk_mean_d2", "mean d2")]),
        "",
        *paired_section(cells, jerk),
    ]


def _delays_section(cells: pd.DataFrame, delays: pd.DataFrame, groups: pd.DataFrame, out_dir: Path) -> list[str]:
    lines = ["## Delays", ""]
    if delays.empty:
        lines += ["No per-inference delays are stored for this run (cells written before schema v2, or no "
                  "asynchronous inference started); the percentiles below are the ones the run stored.", ""]
    else:
        plot_delay_survival(delays, out_dir / "delay_survival.png")
        lines += ["![delay survival](delay_survival.png)", "",
                  "How often an inference takes longer than x, per setup, on a log scale so that the rare long "
                  "delays are visible: P(delay > x) for the drawn delays (solid) and P(dhat > x) for the forecast "
                  "the method froze its prefix with (dashed). Setups that replay the same draws share one delay "
                  "curve; their forecasts tell them apart. A curve crosses the 5% line at its p95. A delay longer "
                  "than H - s (the actions left in the current chunk when the inference starts) makes the robot "
                  "stall.", ""]
    return lines + [
        "Percentiles are nearest-rank (a delay that occurred, never interpolated), in control steps with "
        "milliseconds in brackets.",
        "",
        md_table(delay_table(cells, delays, groups), [
            ("setup", "setup"), ("n", "inferences"), ("d_p50", "delay p50", str), ("d_p95", "delay p95", str),
            ("d_p99", "delay p99", str), ("d_max", "delay max", str), ("dhat_p50", "forecast p50", str),
            ("dhat_p95", "forecast p95", str), ("dhat_p99", "forecast p99", str),
            ("mean_exec_horizon", "mean execution horizon")]),
        "",
    ]


def _violations_section(groups: pd.DataFrame, out_dir: Path) -> list[str]:
    plot_rates(groups, out_dir / "violations_stalls.png")
    return [
        "## Violations and stalls",
        "",
        "![violation and stall rates](violations_stalls.png)",
        "",
        "All methods of a setup replay one schedule, so these rates belong to the setup and are shown once per "
        "setup (a setup whose cells differ, e.g. `sync`, whose world waits, gets a row per group of methods). A "
        "**violation** is an inference whose delay exceeds the actions left in the current chunk (d > H - s): the "
        "chunk runs out before the new one arrives and the fallback action runs (a **stall step**; the stall "
        "fraction is per control step, the other rates per inference). A **forecast miss** is an inference whose "
        "delay exceeds the forecast dhat, so some executed actions were not frozen in the prefix; an "
        "**over-forecast** (d < dhat) freezes more of the prefix than needed. Under `sync` the world waits for "
        "inference, so its control timeline has no violations.",
        "",
        md_table(groups, [("setup", "setup"), ("methods", "methods"), ("violation_rate", "violation rate", pct),
                          ("stall_frac", "stall fraction", pct), ("forecast_miss_rate", "forecast-miss rate", pct),
                          ("over_forecast_rate", "over-forecast rate", pct),
                          ("mean_exec_horizon", "mean execution horizon")]),
        "",
    ]


def _cost_section(cells: pd.DataFrame) -> list[str]:
    return [
        "## Cost",
        "",
        "Network forward passes (NFE) and vector-Jacobian products (VJP) per inference and per env step; wall ms "
        "per batched inference call (the median of the timed calls after warm-up, compile excluded, with their "
        "10th-90th percentile range; cells written before schema v4 have no range); rollout throughput; compile seconds, where **cached** means the cell reused the episode "
        "compiled for an earlier cell of the run (same computation) and spent no time compiling.",
        "",
        md_table(cells, [("level", "level"), ("setup", "setup"), ("method", "method"),
                         ("nfe_per_inference", "NFE / inference"), ("vjp_per_inference", "VJP / inference"),
                         ("nfe_per_env_step", "NFE / env step"), ("inference_ms", "median ms / inference", ms),
                         ("inference_ms_range", "ms p10-p90", str),
                         ("env_steps_per_s", "env steps / s"), ("compile_s", "compile s", _compile_s)]),
        "",
    ]


def write_report(conn: duckdb.DuckDBPyConnection, run_id: str, out_dir: Path, *, db_path: str = "",
                 reports_dir: Path = REPORTS_DIR) -> Path:
    """Write ``out_dir/report.md`` and its figures (PNG and SVG) for one run -> the page's path.

    Every file goes through a temporary name renamed into place; a folder that cannot be made or a failed
    write (full disk, read-only) is a `UserError` naming the path and ``--out``."""
    data = run_queries(conn, run_id, reports_dir)
    run = data["run"].iloc[0]
    cells, jerk, delays, rates = (sort_cells(data["cells"]), data["jerk"], data["delay_survival"],
                                  sort_cells(data["rates"]))
    cells["inference_ms_range"] = [
        MISSING if is_missing(lo) or is_missing(hi) else f"{ms(lo)}-{ms(hi)}"
        for lo, hi in zip(cells["inference_ms_p10"], cells["inference_ms_p90"], strict=True)]
    make_output_dir(out_dir, "--out")
    path = out_dir / "report.md"
    lines = _header(run, run_id, cells)
    if cells.empty:
        lines += ["No cell of this run has finished yet, so there is nothing to plot.", ""]
        return write_text_atomically(path, "\n".join(lines), "--out")
    groups = schedule_groups(rates)
    lines += ["## Findings", "", *findings(cells, jerk), ""]
    lines += _solve_rate_section(cells, out_dir)
    lines += _smoothness_section(cells, jerk, out_dir)
    lines += _delays_section(cells, delays, groups, out_dir)
    lines += _violations_section(groups, out_dir)
    lines += _cost_section(cells)
    lines += [
        "## Provenance",
        "",
        *provenance_table(run, data["run"].columns),
        "",
        f"Reproduce the numbers with `rtcbench query --db {db_path or 'rtcbench.duckdb'} \"SELECT * FROM v_cells WHERE "
        f"run_id = '{run_id}'\"`.",
        "",
    ]
    return write_text_atomically(path, "\n".join(lines), "--out")
