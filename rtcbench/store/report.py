"""`rtcbench report`: Markdown plus PNG plots for one run, built from the SQL files in ``reports/``.

Every number in the report comes from a query in ``reports/*.sql`` run on a read-only connection:
``run.sql`` (provenance), ``cells.sql`` (one row per cell), ``jerk.sql`` (per-rollout smoothness),
``delay_cdf.sql`` (delay distribution per setup) and ``rates.sql`` (violation, stall and forecast
rates). The queries take the run id as ``$run_id``.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from rtcbench.errors import UserError
from rtcbench.shipped import shipped_dir

REPORTS_DIR = shipped_dir("reports")
QUERIES = ("run", "cells", "jerk", "delay_cdf", "rates")


def load_query(name: str, reports_dir: Path = REPORTS_DIR) -> str:
    path = reports_dir / f"{name}.sql"
    if not path.is_file():
        raise UserError(f"report query {name}.sql is missing (expected in {reports_dir})", path=str(path))
    return path.read_text()


def pick_run(conn: duckdb.DuckDBPyConnection, run_id: str | None, db_path: str) -> str:
    """The given run, else the latest complete run, else the latest run."""
    if run_id:
        if not conn.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone():
            raise UserError(f"no run {run_id!r} in this file", path=db_path, field="--run")
        return run_id
    row = conn.execute(
        "SELECT run_id FROM runs ORDER BY status = 'complete' DESC, started_at DESC LIMIT 1").fetchone()
    if row is None:
        raise UserError("the file holds no runs yet (write one with `rtcbench run`)", path=db_path)
    return row[0]


def run_queries(conn: duckdb.DuckDBPyConnection, run_id: str, reports_dir: Path = REPORTS_DIR) -> dict[str, pd.DataFrame]:
    return {name: conn.execute(load_query(name, reports_dir), {"run_id": run_id}).df() for name in QUERIES}


# -- formatting -----------------------------------------------------------------------------------
def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _md_table(frame: pd.DataFrame, columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    rows = ["| " + " | ".join(_fmt(row[col]) for col, _ in columns) + " |" for _, row in frame.iterrows()]
    return "\n".join([head, rule, *rows])


def _ci(row: pd.Series) -> str:
    return f"{row['solve_rate']:.3f} [{row['solve_ci_low']:.3f}, {row['solve_ci_high']:.3f}]"


# -- plots ----------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grouped_positions(n_groups: int, n_bars: int, width_total: float = 0.8):
    width = width_total / max(n_bars, 1)
    offsets = (np.arange(n_bars) - (n_bars - 1) / 2) * width
    return np.arange(n_groups), offsets, width


def plot_solve_rate(cells: pd.DataFrame, out: Path) -> None:
    plt = _plt()
    levels = list(dict.fromkeys(cells["level"]))
    methods = sorted(cells["method"].unique())
    fig, axes = plt.subplots(len(levels), 1, figsize=(max(7, 1.8 * cells["setup"].nunique() + 4), 3.9 * len(levels)),
                             squeeze=False)
    for ax, level in zip(axes[:, 0], levels, strict=True):
        sub = cells[cells["level"] == level]
        setups = list(dict.fromkeys(sub["setup"]))
        x, offsets, width = _grouped_positions(len(setups), len(methods))
        for j, method in enumerate(methods):
            rows = sub[sub["method"] == method].set_index("setup").reindex(setups)
            rate = rows["solve_rate"].to_numpy(float)
            err = np.vstack([rate - rows["solve_ci_low"].to_numpy(float), rows["solve_ci_high"].to_numpy(float) - rate])
            err = np.clip(err, 0.0, None)  # [2, setups]; intervals stored by older versions may sit 1e-16 inside
            bars = ax.bar(x + offsets[j], rate, width, yerr=err, capsize=3, label=method)
            ax.bar_label(bars, labels=[f"{r:.2f}" if math.isfinite(r) else "" for r in rate], fontsize=7,
                         label_type="center")
        ax.set_xticks(x, setups)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("delay setup")
        ax.set_ylabel("solve rate (first episode)")
        n = int(sub["n_rollouts"].max())
        ax.set_title(f"{level}: solve rate, Wilson 95% error bars, n={n} rollouts per cell", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="method", fontsize=8, title_fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_jerk(jerk: pd.DataFrame, out: Path) -> None:
    plt = _plt()
    levels = list(dict.fromkeys(jerk["level"]))
    methods = sorted(jerk["method"].unique())
    fig, axes = plt.subplots(len(levels), 2, figsize=(max(10, 2.4 * jerk["setup"].nunique() + 4), 3.6 * len(levels)),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row_axes, level in zip(axes, levels, strict=True):
        sub = jerk[jerk["level"] == level]
        setups = list(dict.fromkeys(sub["setup"]))
        x, offsets, width = _grouped_positions(len(setups), len(methods))
        for ax, metric, title in ((row_axes[0], "jerk_max_d1", "largest step change, max_t |a_t - a_(t-1)|"),
                                  (row_axes[1], "jerk_max_d2", "jerk proxy, max_t |a_t - 2a_(t-1) + a_(t-2)|")):
            for j, method in enumerate(methods):
                data = [sub[(sub["method"] == method) & (sub["setup"] == s)][metric].dropna().to_numpy() for s in setups]
                keep = [i for i, d in enumerate(data) if d.size]
                if not keep:
                    continue
                parts = ax.boxplot([data[i] for i in keep], positions=x[keep] + offsets[j], widths=width * 0.85,
                                   patch_artist=True, showfliers=True, flierprops={"markersize": 2})
                for box in parts["boxes"]:
                    box.set_facecolor(colors[j % len(colors)])
                    box.set_alpha(0.7)
                ax.plot([], [], color=colors[j % len(colors)], lw=6, alpha=0.7, label=method)
            ax.set_xticks(x, setups)
            ax.set_ylabel("per rollout (lower is smoother)")
            ax.set_xlabel("delay setup")
            ax.set_title(f"{level}\n{title}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(title="method", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_delay_cdf(cdf: pd.DataFrame, cells: pd.DataFrame, out: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    d_right = float(cdf["d"].max())
    for i, setup in enumerate(dict.fromkeys(cdf["setup"])):
        sub = cdf[cdf["setup"] == setup]
        color = colors[i % len(colors)]
        d_values, cdf_values = sub["d"].to_numpy(float), sub["cdf"].to_numpy(float)
        xs = np.concatenate([[d_values[0] - 1], d_values])
        ys = np.concatenate([[0.0], cdf_values])
        stats = cells[cells["setup"] == setup].iloc[0]
        p95, p99 = float(stats["d_p95"]), float(stats["d_p99"])
        ax.step(xs, ys, where="post", color=color, lw=1.8,
                label=f"{setup}: n={int(sub['n_total'].iloc[0])}, p95={_fmt(p95)}, p99={_fmt(p99)}")
        for value, style, marker, size in ((p95, ":", "o", 9), (p99, "--", "s", 6)):
            if math.isfinite(value):
                height = float(cdf_values[np.searchsorted(d_values, value, side="right") - 1]) if value >= d_values[0] else 0.0
                ax.axvline(value, color=color, ls=style, lw=1)
                ax.plot([value], [height], marker=marker, color=color, ms=size, mfc="white" if marker == "o" else color)
    ax.plot([], [], "ko:", mfc="white", label="p95 (dotted, open circle)")
    ax.plot([], [], "ks--", label="p99 (dashed, square)")
    h = cells["chunk_size"].dropna()
    if len(h):
        h_value = float(h.iloc[0])
        ax.axvline(h_value, color="grey", lw=1.5, alpha=0.6)
        ax.text(h_value - 0.1, 0.5, "H (chunk size)", color="grey", fontsize=8, rotation=90, ha="right", va="center")
        d_right = max(d_right, h_value)
    ax.set_xlim(min(-0.5, float(cdf["d"].min()) - 1), d_right + 0.5)
    ax.set_xlabel("inference delay d (control steps)")
    ax.set_ylabel("fraction of inferences with delay <= d")
    ax.set_ylim(0, 1.04)
    ax.set_title("Delay CDF per setup (drawn delays of asynchronous inferences, k >= 1)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_rates(rates: pd.DataFrame, out: Path) -> None:
    plt = _plt()
    rates = rates.assign(label=rates["setup"] + "\n" + rates["method"])
    levels = list(dict.fromkeys(rates["level"]))
    fig, axes = plt.subplots(len(levels), 1, figsize=(max(7, 0.9 * len(rates) / len(levels) + 3), 3.6 * len(levels)),
                             squeeze=False)
    series = (("violation_rate", "violation rate (per inference)"), ("stall_frac", "stall-step fraction"),
              ("forecast_miss_rate", "forecast-miss rate (per inference)"))
    for ax, level in zip(axes[:, 0], levels, strict=True):
        sub = rates[rates["level"] == level]
        x, offsets, width = _grouped_positions(len(sub), len(series))
        for j, (col, label) in enumerate(series):
            values = sub[col].to_numpy(float)
            bars = ax.bar(x + offsets[j], values, width, label=label)
            ax.bar_label(bars, labels=[_fmt(v, 2) for v in values], padding=1, fontsize=7)
        ax.set_xticks(x, sub["label"], fontsize=8)
        shown = sub[[c for c, _ in series]].to_numpy(float)
        top = float(shown[np.isfinite(shown)].max()) if np.isfinite(shown).any() else 0.0
        ax.set_ylim(0, max(0.05, top * 1.2))
        ax.set_ylabel("rate")
        ax.set_title(f"{level}: timeline failures per setup and method", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# -- markdown -------------------------------------------------------------------------------------
def _findings(cells: pd.DataFrame) -> list[str]:
    """One line per (level, setup): solve rates and jerk across methods, with intervals; computed, not judged."""
    lines = []
    for (level, setup), sub in cells.groupby(["level", "setup"], sort=False):
        head = f"- **{level} / {setup}**"
        if len(sub) < 2:
            row = sub.iloc[0]
            lines.append(f"{head}: {row['method']} solves {_ci(row)}, jerk proxy {_fmt(row['jerk_max_d2'])}.")
            continue
        best = sub.loc[sub["solve_rate"].idxmax()]
        worst = sub.loc[sub["solve_rate"].idxmin()]
        if best["solve_rate"] == worst["solve_rate"]:
            text = f"{head}: all {len(sub)} methods solve {_ci(best)}"
        else:
            overlap = best["solve_ci_low"] <= worst["solve_ci_high"]
            text = (f"{head}: highest solve rate {best['method']} {_ci(best)}, lowest {worst['method']} {_ci(worst)}"
                    + (" (the intervals overlap)" if overlap else ""))
        jerk = sub.dropna(subset=["jerk_max_d2"])
        if len(jerk) >= 2:
            smooth = jerk.loc[jerk["jerk_max_d2"].idxmin()]
            rough = jerk.loc[jerk["jerk_max_d2"].idxmax()]
            text += (f"; smoothest {smooth['method']} (jerk proxy {_fmt(smooth['jerk_max_d2'])}), roughest "
                     f"{rough['method']} ({_fmt(rough['jerk_max_d2'])})")
        lines.append(text + ".")
    lines.append("")
    lines.append("These are per-cell summaries. Whether a difference between two runs is real is decided by "
                 "`rtcbench compare`, which tests the paired per-rollout data (McNemar for solves, bootstrap for jerk).")
    return lines


def write_report(conn: duckdb.DuckDBPyConnection, run_id: str, out_dir: Path, *, db_path: str = "",
                 reports_dir: Path = REPORTS_DIR) -> Path:
    data = run_queries(conn, run_id, reports_dir)
    run = data["run"].iloc[0]
    cells, jerk, cdf, rates = data["cells"], data["jerk"], data["delay_cdf"], data["rates"]
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# rtcbench report: {run['scenario']} (run `{run_id}`)", ""]
    status_note = "" if run["status"] == "complete" else (
        f" **This run did not complete** ({run['status']}"
        + (f": {str(run['error']).strip().splitlines()[-1]}" if isinstance(run["error"], str) and run["error"] else "")
        + "); only its finished cells are shown.")
    n_roll = sorted({int(v) for v in cells["n_rollouts"]}) if len(cells) else []
    lines += [
        f"Scenario `{run['scenario']}` version {_fmt(run['scenario_version'])}, config hash `{str(run['config_hash'])[:16]}`, "
        f"status **{run['status']}**, {len(cells)} of {int(run['n_cells_planned'])} cells, "
        f"{', '.join(map(str, n_roll)) or '0'} rollouts per cell, on {run['jax_backend']} ({run['device_kind']}).{status_note}",
        "",
        "## What this measures",
        "",
        "Each **cell** is one level x one method x one delay setup. Every rollout runs a flow-matching chunk policy "
        "in closed loop on a Kinetix level while inference delays are replayed from the setup's delay schedule: "
        "an inference started at step tau delivers its chunk d steps later, and meanwhile the robot keeps executing "
        "the old chunk. All methods of a setup see the same env seeds and the same delays (common random numbers), "
        "so differences between methods are paired. Only the first episode of each rollout counts.",
        "",
    ]
    if cells.empty:
        lines += ["No cell of this run has finished yet, so there is nothing to plot.", ""]
        (out_dir / "report.md").write_text("\n".join(lines))
        return out_dir / "report.md"

    lines += ["## Findings", "", *_findings(cells), ""]

    plot_solve_rate(cells, out_dir / "solve_rate.png")
    lines += [
        "## Solve rate",
        "",
        "![solve rate per method and setup](solve_rate.png)",
        "",
        "Fraction of rollouts whose first episode reached the goal, with a Wilson 95% interval.",
        "",
        _md_table(cells.assign(solve=cells.apply(_ci, axis=1)), [
            ("level", "level"), ("setup", "setup"), ("method", "method"), ("n_rollouts", "n"),
            ("solve", "solve rate [95% CI]"), ("return_mean", "mean return"), ("length_mean", "mean length"),
            ("solves_per_1000_wall_steps", "solves / 1000 wall steps")]),
        "",
    ]
    if jerk[["jerk_max_d1", "jerk_max_d2"]].notna().any().any():
        plot_jerk(jerk, out_dir / "jerk.png")
        lines += ["## Smoothness", "", "![jerk per method and setup](jerk.png)", ""]
    else:
        lines += ["## Smoothness", "", "No finite per-rollout jerk was stored (episodes too short).", ""]
    lines += [
        "Per rollout, on the executed actions a_t of the first episode: the largest step change "
        "max ||a_t - a_{t-1}|| (d1) and the largest second difference max ||a_t - 2a_{t-1} + a_{t-2}|| (d2, the "
        "jerk proxy of Black et al. 2025). Boxes show the spread over rollouts; the table gives the mean over rollouts.",
        "",
        _md_table(cells, [("level", "level"), ("setup", "setup"), ("method", "method"), ("jerk_max_d1", "max d1"),
                          ("jerk_max_d2", "max d2"), ("jerk_mean_d1", "mean d1"), ("jerk_mean_d2", "mean d2")]),
        "",
        "## Delays",
        "",
    ]
    if cdf.empty:
        lines += ["No per-inference delays are stored for this run (cells written before schema v2, or no "
                  "asynchronous inference started).", ""]
    else:
        plot_delay_cdf(cdf, cells, out_dir / "delay_cdf.png")
        lines += ["![delay CDF](delay_cdf.png)", "",
                  "Distribution of the drawn inference delays in control steps, one curve per setup; p95 and p99 are "
                  "marked. A delay longer than H - s (the actions left in the current chunk when the inference starts) makes the robot stall.", ""]
    per_setup = cells.drop_duplicates("setup")
    lines += [
        _md_table(per_setup, [("setup", "setup"), ("d_p50", "d p50"), ("d_p95", "d p95"), ("d_p99", "d p99"),
                              ("d_max", "d max"), ("dhat_p50", "forecast p50"), ("dhat_p95", "forecast p95"),
                              ("mean_exec_horizon", "mean execution horizon")]),
        "",
        "## Violations and stalls",
        "",
    ]
    plot_rates(rates, out_dir / "violations_stalls.png")
    lines += [
        "![violation and stall rates](violations_stalls.png)",
        "",
        "A **violation** is an inference whose delay exceeds the actions left in the current chunk (d > H - s): the "
        "chunk runs out before the new one arrives and the fallback action runs (a **stall step**). A **forecast "
        "miss** is an inference whose delay exceeds the forecast dhat, so some executed actions were not frozen in "
        "the prefix. Under `sync` the world waits for inference, so its control timeline has no violations.",
        "",
        _md_table(rates, [("level", "level"), ("setup", "setup"), ("method", "method"),
                          ("violation_rate", "violation rate"), ("stall_frac", "stall fraction"),
                          ("forecast_miss_rate", "forecast-miss rate"), ("over_forecast_rate", "over-forecast rate")]),
        "",
        "## Cost",
        "",
        "Network forward passes (NFE) and vector-Jacobian products (VJP) per inference and per env step; wall ms "
        "per batched inference call (median after warm-up, compile excluded); rollout throughput.",
        "",
        _md_table(cells, [("level", "level"), ("setup", "setup"), ("method", "method"),
                          ("nfe_per_inference", "NFE / inference"), ("vjp_per_inference", "VJP / inference"),
                          ("nfe_per_env_step", "NFE / env step"), ("inference_ms", "inference ms"),
                          ("env_steps_per_s", "env steps / s"), ("compile_s", "compile s")]),
        "",
        "## Provenance",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {key} | {_fmt(run[key])} |" for key in data["run"].columns if key not in ("error",)],
        "",
        f"Reproduce the numbers with `rtcbench query --db {db_path or 'rtcbench.duckdb'} \"SELECT * FROM v_cells WHERE "
        f"run_id = '{run_id}'\"`.",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
