"""`rtcbench report`: Markdown plus figures (PNG and SVG) for one run, built from the SQL files in ``reports/``.

Every number in the report comes from a query in ``reports/*.sql`` run on a read-only connection:
``run.sql`` (provenance), ``cells.sql`` (one row per cell), ``jerk.sql`` (per-rollout outcome and
smoothness: the box plots and the paired tests against naive), ``delay_survival.sql`` (distribution of the
drawn delays and of their forecasts per setup) and ``rates.sql`` (violation, stall and forecast rates).
The queries take the run id as ``$run_id``. The paired tests are the study's (`rtcbench.store.study`:
McNemar on the per-rollout solves, a paired bootstrap of the jerk difference); figures follow
`rtcbench.store.style` (method order, colour-blind-safe colours, PNG and SVG).
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from rtcbench.errors import UserError
from rtcbench.shipped import shipped_dir
from rtcbench.stats import nearest_rank_percentile
from rtcbench.store.style import (
    BLACK,
    RATE_STYLES,
    SETUP_COLORS,
    method_styles,
    ordered_methods,
    save_figure,
    split_family,
)

REPORTS_DIR = shipped_dir("reports")
QUERIES = ("run", "cells", "jerk", "delay_survival", "rates")
RATE_COLUMNS = ("violation_rate", "forecast_miss_rate", "over_forecast_rate", "stall_frac")
RATE_TITLES = {"violation_rate": "violation (d > H - s)", "forecast_miss_rate": "forecast miss (d > dhat)",
               "over_forecast_rate": "over-forecast (d < dhat)", "stall_frac": "stall steps"}


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
def _missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _fmt(value, digits: int = 3) -> str:
    """A table cell: `digits` significant digits, never scientific notation above 1 (1,750 not 1.75e+03)."""
    if _missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        text = f"{value:.{digits}g}"
        return f"{value:,.0f}" if "e" in text else text
    return str(value)


def _ms(value) -> str:
    """Milliseconds: whole ms with thousands separators from 100 ms, else one or two decimals."""
    if _missing(value):
        return "–"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _pct(value) -> str:
    if _missing(value):
        return "–"
    value = float(value)
    return "0%" if value == 0 else "< 0.1%" if value < 0.001 else f"{100 * value:.1f}%"


def _p_value(p: float) -> str:
    """A p-value: two significant digits, "< 0.0001" below that (no scientific notation)."""
    if _missing(p):
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


def _compile_s(value) -> str:
    if _missing(value):
        return "–"
    return "cached" if float(value) == 0 else f"{float(value):.1f}"


def _md_table(frame: pd.DataFrame, columns: list[tuple]) -> str:
    """Markdown table; columns are (column, title) or (column, title, formatter)."""
    head = "| " + " | ".join(col[1] for col in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    rows = ["| " + " | ".join((col[2] if len(col) > 2 else _fmt)(row[col[0]]) for col in columns) + " |"
            for _, row in frame.iterrows()]
    return "\n".join([head, rule, *rows])


def _ci(row: pd.Series) -> str:
    return f"{row['solve_rate']:.3f} [{row['solve_ci_low']:.3f}, {row['solve_ci_high']:.3f}]"


def sort_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by level, setup (as stored), then method in the report's method order (naive first)."""
    if frame.empty:
        return frame
    levels = {v: i for i, v in enumerate(dict.fromkeys(frame["level"]))}
    setups = {v: i for i, v in enumerate(dict.fromkeys(frame["setup"]))}
    methods = {m: i for i, m in enumerate(ordered_methods(frame["method"]))}
    order = sorted(range(len(frame)), key=lambda i: (levels[frame["level"].iat[i]], setups[frame["setup"].iat[i]],
                                                     methods[frame["method"].iat[i]]))
    return frame.iloc[order].reset_index(drop=True)


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


def _method_legend(fig, methods: list[str], styles) -> None:
    """One legend for the whole figure, below the panels, so it never covers data."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=styles[m].color, hatch=styles[m].hatch, edgecolor="#333333", label=m) for m in methods]
    families = list(dict.fromkeys(split_family(m)[0] for m in methods))
    # entries fill columns first: one column per family of an ablation, else up to six in a row
    ncols = len(families) if len(families) > 1 else min(len(methods), 6)
    fig.legend(handles=handles, title="method", loc="outside lower center", ncols=ncols, fontsize=8,
               title_fontsize=8, frameon=False)


def plot_solve_rate(cells: pd.DataFrame, out: Path) -> list[Path]:
    plt = _plt()
    levels = list(dict.fromkeys(cells["level"]))
    methods = ordered_methods(cells["method"])
    styles = method_styles(methods)
    n_setups = cells["setup"].nunique()
    fig, axes = plt.subplots(len(levels), 1, figsize=(max(7.0, 0.32 * len(methods) * n_setups + 2.5),
                                                      3.6 * len(levels) + 0.9), squeeze=False, layout="constrained")
    for ax, level in zip(axes[:, 0], levels, strict=True):
        sub = cells[cells["level"] == level]
        setups = list(dict.fromkeys(sub["setup"]))
        x, offsets, width = _grouped_positions(len(setups), len(methods))
        for j, method in enumerate(methods):
            rows = sub[sub["method"] == method].set_index("setup").reindex(setups)
            rate = rows["solve_rate"].to_numpy(float)
            high = rows["solve_ci_high"].to_numpy(float)
            err = np.vstack([rate - rows["solve_ci_low"].to_numpy(float), high - rate])
            err = np.clip(err, 0.0, None)  # [2, setups]; intervals stored by older versions may sit 1e-16 inside
            ax.bar(x + offsets[j], rate, width, yerr=err, color=styles[method].color, hatch=styles[method].hatch,
                   edgecolor="#333333", linewidth=0.6, error_kw={"elinewidth": 0.8, "capsize": 2})
            for xi, r, hi in zip(x + offsets[j], rate, high, strict=True):
                if math.isfinite(r):
                    ax.text(xi, (hi if math.isfinite(hi) else r) + 0.015, f"{r:.2f}", rotation=90, ha="center",
                            va="bottom", fontsize=6.5)
        ax.set_xticks(x, setups)
        ax.set_ylim(0, 1.22)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_xlabel("delay setup")
        ax.set_ylabel("solve rate (first episode)")
        n = int(sub["n_rollouts"].max())
        ax.set_title(f"{level}: solve rate with Wilson 95% interval, n = {n} rollouts per cell", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    _method_legend(fig, methods, styles)
    return save_figure(fig, out)


def plot_jerk(jerk: pd.DataFrame, dt_ms: float | None, out: Path) -> list[Path]:
    import matplotlib.patheffects as pe

    plt = _plt()
    levels = list(dict.fromkeys(jerk["level"]))
    methods = ordered_methods(jerk["method"])
    styles = method_styles(methods)
    n_setups = jerk["setup"].nunique()
    n_boxes = len(methods) * n_setups
    # side by side while the boxes fit, else the two measures one above the other
    wide = n_boxes <= 12
    shape = (len(levels), 2) if wide else (2 * len(levels), 1)
    fig, axes = plt.subplots(*shape, figsize=(max(10.0, 0.5 * n_boxes + 3) if wide else max(10.0, 0.3 * n_boxes + 3),
                                              (3.8 if wide else 3.4) * shape[0] + 0.9),
                             squeeze=False, layout="constrained")
    axes = axes.reshape(len(levels), 2)
    # a white median with a black outline is visible on every fill colour
    median = {"color": "white", "linewidth": 1.6,
              "path_effects": [pe.Stroke(linewidth=3.2, foreground="black"), pe.Normal()]}
    step = f"step = {dt_ms:g} ms" if dt_ms else "one control step"
    panels = (("jerk_max_d1", "largest step change per rollout", r"max$_t\,\|a_t - a_{t-1}\|$" + "\n(action units per step)"),
              ("jerk_max_d2", "jerk proxy per rollout (Black et al. 2025)",
               r"max$_t\,\|a_t - 2a_{t-1} + a_{t-2}\|$" + "\n(action units per step²)"))
    for row_axes, level in zip(axes, levels, strict=True):
        sub = jerk[jerk["level"] == level]
        setups = list(dict.fromkeys(sub["setup"]))
        x, offsets, width = _grouped_positions(len(setups), len(methods))
        for ax, (metric, title, ylabel) in zip(row_axes, panels, strict=True):
            for j, method in enumerate(methods):
                data = [sub[(sub["method"] == method) & (sub["setup"] == s)][metric].dropna().to_numpy() for s in setups]
                keep = [i for i, d in enumerate(data) if d.size]
                if not keep:
                    continue
                parts = ax.boxplot([data[i] for i in keep], positions=x[keep] + offsets[j], widths=width * 0.85,
                                   patch_artist=True, showfliers=True, medianprops=median,
                                   flierprops={"marker": "o", "markersize": 2, "markerfacecolor": styles[method].color,
                                               "markeredgecolor": "#333333", "markeredgewidth": 0.3})
                for box in parts["boxes"]:
                    box.set_facecolor(styles[method].color)
                    box.set_hatch(styles[method].hatch)
                    box.set_edgecolor("#333333")
            ax.set_xticks(x, setups)
            ax.set_xlim(-0.5, len(setups) - 0.5)
            ax.set_ylabel(ylabel, fontsize=9)
            ax.set_xlabel(f"delay setup ({step}; lower is smoother)")
            ax.set_title(f"{level}: {title}", fontsize=9.5)
            ax.grid(axis="y", alpha=0.3)
    _method_legend(fig, methods, styles)
    return save_figure(fig, out)


def delay_distributions(delays: pd.DataFrame) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(setup, 'delay' | 'forecast') -> (values [m] ascending, counts [m]) from delay_survival.sql."""
    out = {}
    for (setup, quantity), sub in delays.groupby(["setup", "quantity"], sort=False):
        sub = sub.sort_values("value")
        out[(setup, quantity)] = (sub["value"].to_numpy(np.int64), sub["n"].to_numpy(np.int64))
    return out


def percentiles(values: np.ndarray, counts: np.ndarray, qs=(50, 95, 99)) -> list[int]:
    """Nearest-rank percentiles of a counted distribution (a value that occurred; never interpolated)."""
    return [int(v) for v in np.atleast_1d(nearest_rank_percentile(np.repeat(values, counts), list(qs)))]


def _survival_xy(values: np.ndarray, counts: np.ndarray, x_left: float) -> tuple[np.ndarray, np.ndarray]:
    """Steps of P(X > x): 1 left of the smallest value, then after each value the share above it (0 last)."""
    total = int(counts.sum())
    above = (total - np.cumsum(counts)) / total  # exact 0 at the maximum
    return np.concatenate([[x_left], values]).astype(float), np.concatenate([[1.0], above])


def _group_same(dists: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[list[str]]:
    groups: dict[tuple, list[str]] = {}
    for setup, (values, counts) in dists.items():
        groups.setdefault((tuple(values.tolist()), tuple(counts.tolist())), []).append(setup)
    return list(groups.values())


def plot_delay_survival(delays: pd.DataFrame, out: Path) -> list[Path]:
    """Survival P(delay > x) of the drawn delays per setup (solid) and of their forecasts dhat (dashed), log y,
    steps below and ms above. Setups with the same draws share one delay curve, so no curve hides another;
    the forecasts tell them apart."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    dists = delay_distributions(delays)
    setups = list(dict.fromkeys(delays["setup"]))
    color = {s: SETUP_COLORS[i % len(SETUP_COLORS)] for i, s in enumerate(setups)}
    x_left = min(0.0, float(delays["value"].min())) - 0.5
    fig, ax = plt.subplots(figsize=(9, 5.6), layout="constrained")

    def label(kind: str, group: list[str], values, counts) -> str:
        p50, p95, p99 = percentiles(values, counts)
        return (f"{kind} {', '.join(group)}: p50 {p50}, p95 {p95}, p99 {p99}, max {int(values.max())}"
                f" (n = {int(counts.sum()):,})")

    delay_d = {s: dists[(s, "delay")] for s in setups if (s, "delay") in dists}
    forecast_d = {s: dists[(s, "forecast")] for s in setups if (s, "forecast") in dists}

    def same(a, b) -> bool:
        return a is not None and b is not None and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])

    # A forecast equal to its setup's delay (the oracle, a fixed delay with a matching forecast) would be drawn
    # exactly on a curve of its own colour: it is named in that curve's label instead.
    folded = set()
    for group in _group_same(delay_d):
        values, counts = delay_d[group[0]]
        xs, ys = _survival_xy(values, counts, x_left)
        text = label("delay", group, values, counts) + (" (same draws)" if len(group) > 1 else "")
        if len(group) == 1 and same(forecast_d.get(group[0]), delay_d[group[0]]):
            folded.add(group[0])
            text += "; its forecast dhat is the same"
        ax.step(xs, ys, where="post", color=color[group[0]] if len(group) == 1 else BLACK, lw=2.6, alpha=0.85,
                label=text, zorder=2)
    for group in _group_same({s: d for s, d in forecast_d.items() if s not in folded}):
        values, counts = forecast_d[group[0]]
        xs, ys = _survival_xy(values, counts, x_left)
        note = " (= the delay)" if all(same(delay_d.get(s), forecast_d[s]) for s in group) else ""
        ax.step(xs, ys, where="post", color=color[group[0]], lw=1.5, ls=(0, (5, 2)), marker="o", ms=3.5,
                label=label("forecast", group, values, counts) + note, zorder=3)
    n_max = int(delays.groupby(["setup", "quantity"])["n"].sum().max())
    ax.set_yscale("log", nonpositive="clip")
    ax.set_ylim(0.3 / n_max, 1.6)
    for share, text in ((0.05, "5% tail (p95)"), (0.01, "1% tail (p99)")):
        ax.axhline(share, color="0.45", lw=0.9, ls=":", zorder=1)
        ax.annotate(text, (0.0, share), xycoords=("axes fraction", "data"), xytext=(3, -2), textcoords="offset points",
                    ha="left", va="top", fontsize=7.5, color="0.3")
    h = delays["chunk_size"].dropna()
    x_right = float(delays["value"].max()) + 0.5
    if len(h):
        h_value = float(h.iloc[0])
        ax.axvline(h_value, color="0.45", lw=1.2, ls="--", zorder=1)
        ax.annotate("H (chunk size)", (h_value, 1.0), xycoords=("data", "axes fraction"), xytext=(-3, -4),
                    textcoords="offset points", rotation=90, ha="right", va="top", fontsize=7.5, color="0.3")
        x_right = max(x_right, h_value + 0.5)
    ax.set_xlim(x_left, x_right)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("x: delay in control steps")
    ax.set_ylabel("share of inferences with delay > x (log)")
    dts = sorted({float(v) for v in delays["dt_ms"].dropna()})
    if len(dts) == 1:
        dt = dts[0]
        top = ax.secondary_xaxis("top", functions=(lambda s: s * dt, lambda ms: ms / dt))
        top.set_xlabel(f"x in milliseconds (one step = {dt:g} ms)")
    ax.set_title("Tail of the inference delays per setup: P(delay > x) solid, P(forecast dhat > x) dashed\n"
                 "(asynchronous inferences k >= 1; percentiles nearest-rank)", fontsize=10)
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.12, which="minor", axis="y")
    fig.legend(loc="outside lower center", fontsize=7.5, frameon=False)
    return save_figure(fig, out)


def schedule_groups(rates: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct schedule: all methods of a setup share it (except `sync`, whose world pauses), so the
    rates are shown once per setup; a setup whose cells disagree gets one row per group of methods."""
    rows = []
    all_methods = set(rates["method"])
    for setup, sub in rates.groupby("setup", sort=False):
        key = [tuple("–" if _missing(v) else f"{float(v):.9f}" for v in row)
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


def plot_rates(groups: pd.DataFrame, out: Path) -> list[Path]:
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    plt = _plt()
    n = len(groups)
    fig, (ax_inf, ax_step) = plt.subplots(1, 2, figsize=(max(8.0, 1.9 * n + 3.5), 4.8),
                                          width_ratios=[3, max(1.3, 0.6 * n)], layout="constrained")
    per_inference = ("violation_rate", "forecast_miss_rate", "over_forecast_rate")
    x, offsets, width = _grouped_positions(n, len(per_inference))
    for j, col in enumerate(per_inference):
        values = groups[col].to_numpy(float)
        color, hatch = RATE_STYLES[col]
        bars = ax_inf.bar(x + offsets[j], values, width, color=color, hatch=hatch, edgecolor="#333333", lw=0.6)
        ax_inf.bar_label(bars, labels=[_pct(v) for v in values], padding=1, fontsize=6.5, rotation=90)
    color, hatch = RATE_STYLES["stall_frac"]
    values = groups["stall_frac"].to_numpy(float)
    bars = ax_step.bar(x, values, 0.6, color=color, hatch=hatch, edgecolor="#333333", lw=0.6)
    ax_step.bar_label(bars, labels=[_pct(v) for v in values], padding=1, fontsize=6.5, rotation=90)
    for ax, cols, title, ylabel in (
            (ax_inf, per_inference, "per inference (k >= 1)", "share of inferences"),
            (ax_step, ("stall_frac",), "per control step", "share of control steps")):
        shown = groups[list(cols)].to_numpy(float)
        top = float(shown[np.isfinite(shown)].max()) if np.isfinite(shown).any() else 0.0
        ax.set_ylim(0, max(0.05, top * 1.3))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xticks(x, groups["label"], fontsize=8, rotation=30 if n > 6 else 0, ha="right" if n > 6 else "center")
        ax.set_xlabel("delay setup")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor=RATE_STYLES[c][0], hatch=RATE_STYLES[c][1], edgecolor="#333333", label=RATE_TITLES[c])
               for c in (*per_inference, "stall_frac")]
    fig.suptitle("Timeline failures of each delay schedule (one group per setup: its methods share the schedule)",
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return save_figure(fig, out)


# -- paired comparisons against naive -------------------------------------------------------------
def paired_against_naive(cells: pd.DataFrame, rollouts: pd.DataFrame) -> pd.DataFrame:
    """Each method against `naive` (of its family, for ``FAMILY.METHOD`` labels) in the same level and setup,
    paired by rollout index: rollout b of every cell of a run shares its env seed and, inside a setup, its
    delay schedule. Solves: McNemar's exact test; jerk (`jerk_max_d2`): paired bootstrap 95% interval of
    mean(method - naive). Both are the study's functions."""
    from rtcbench.store.study import paired_jerk, paired_solve

    by_cell = {key: frame for key, frame in rollouts.groupby(["level", "setup", "method"], sort=False)}
    rows = []
    for _, cell in sort_cells(cells).iterrows():
        level, setup, method = cell["level"], cell["setup"], cell["method"]
        family, base = split_family(method)
        naive = f"{family}.naive" if family else "naive"
        if base == "naive" or (level, setup, naive) not in by_cell or (level, setup, method) not in by_cell:
            continue
        both = by_cell[(level, setup, naive)].merge(by_cell[(level, setup, method)], on="rollout",
                                                    suffixes=("_base", "_cand")).sort_values("rollout")
        if both.empty:
            continue
        base_frame = pd.DataFrame({"solved": both["solved_base"].astype(bool), "jerk_max_d2": both["jerk_max_d2_base"]})
        cand_frame = pd.DataFrame({"solved": both["solved_cand"].astype(bool), "jerk_max_d2": both["jerk_max_d2_cand"]})
        solve = paired_solve(base_frame, cand_frame)
        rows.append({"level": level, "setup": setup, "method": method, "naive": naive, "pairs": solve.n,
                     "naive_rate": solve.base_rate, "method_rate": solve.cand_rate, "diff": solve.diff,
                     "p_value": solve.p_value, "jerk": paired_jerk(base_frame, cand_frame)})
    return pd.DataFrame(rows)


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
    lines.append("These are per-cell summaries. Whether a method differs from naive inside this run is tested on the "
                 "paired rollouts below (\"Paired against naive\"); whether two runs differ is decided by "
                 "`rtcbench compare`.")
    return lines


def _paired_section(cells: pd.DataFrame, rollouts: pd.DataFrame) -> list[str]:
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
        "jerk: mean difference of the per-rollout max second difference (method - naive) with a paired bootstrap "
        "95% interval (* = the interval excludes 0). The p-values are not corrected for multiple comparisons.",
        "",
        _md_table(table, [("level", "level"), ("setup", "setup"), ("method", "method"), ("naive", "against"),
                          ("pairs", "pairs"), ("naive_solve", "naive solve"), ("method_solve", "method solve"),
                          ("difference", "difference"), ("p_value", "McNemar p", _p_value),
                          ("jerk", "jerk max d2 difference [95% CI]", str)]),
        "",
    ]


def _delay_table(cells: pd.DataFrame, delays: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per setup: delay and forecast percentiles (nearest-rank), in steps and ms, and the mean horizon."""
    dists = delay_distributions(delays) if not delays.empty else {}
    per_setup = cells.drop_duplicates("setup")
    rows = []
    for _, cell in per_setup.iterrows():
        setup, dt = cell["setup"], cell["dt_ms"]

        def both(steps, dt=dt) -> str:
            if _missing(steps):
                return "–"
            return f"{_fmt(float(steps))} ({_ms(float(steps) * dt)} ms)" if not _missing(dt) else _fmt(float(steps))

        row = {"setup": setup}
        if (setup, "delay") in dists:
            values, counts = dists[(setup, "delay")]
            d50, d95, d99 = percentiles(values, counts)
            row |= {"n": int(counts.sum()), "d_p50": both(d50), "d_p95": both(d95), "d_p99": both(d99),
                    "d_max": both(values.max())}
        else:
            row |= {"n": None, **{k: both(cell[k]) for k in ("d_p50", "d_p95", "d_p99", "d_max")}}
        if (setup, "forecast") in dists:
            values, counts = dists[(setup, "forecast")]
            f50, f95, f99 = percentiles(values, counts)
            row |= {"dhat_p50": both(f50), "dhat_p95": both(f95), "dhat_p99": both(f99)}
        else:
            row |= {"dhat_p50": both(cell["dhat_p50"]), "dhat_p95": both(cell["dhat_p95"]), "dhat_p99": "–"}
        horizon = groups[groups["setup"] == setup]["mean_exec_horizon"]
        row["mean_exec_horizon"] = horizon.iloc[0] if len(horizon) else cell["mean_exec_horizon"]
        rows.append(row)
    return pd.DataFrame(rows)


def _provenance(run: pd.Series, columns) -> list[str]:
    shown, missing = [], []
    for key in columns:
        if key == "error":
            continue
        value = run[key]
        if _missing(value):
            missing.append(key)
            continue
        shown.append(f"| {key} | {_fmt(value) if not isinstance(value, (float, np.floating)) else f'{float(value):,.1f}'} |")
    lines = ["| field | value |", "|---|---|", *shown]
    if missing:
        lines += ["", "Not recorded for this run (unknown, or not set): " + ", ".join(f"`{k}`" for k in missing) + "."]
    return lines


def write_report(conn: duckdb.DuckDBPyConnection, run_id: str, out_dir: Path, *, db_path: str = "",
                 reports_dir: Path = REPORTS_DIR) -> Path:
    data = run_queries(conn, run_id, reports_dir)
    run = data["run"].iloc[0]
    cells, jerk, delays, rates = (sort_cells(data["cells"]), data["jerk"], data["delay_survival"],
                                  sort_cells(data["rates"]))
    cells["inference_ms_range"] = [
        "–" if _missing(lo) or _missing(hi) else f"{_ms(lo)}-{_ms(hi)}"
        for lo, hi in zip(cells["inference_ms_p10"], cells["inference_ms_p90"], strict=True)]
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# rtcbench report: {run['scenario']} (run `{run_id}`)", ""]
    status_note = "" if run["status"] == "complete" else (
        f" **This run did not complete** ({run['status']}"
        + (f": {str(run['error']).strip().splitlines()[-1]}" if isinstance(run["error"], str) and run["error"] else "")
        + "); only its finished cells are shown.")
    n_roll = sorted({int(v) for v in cells["n_rollouts"]}) if len(cells) else []
    device = ", ".join(str(run[k]) for k in ("jax_backend", "device_kind") if not _missing(run[k])) or "unknown device"
    lines += [
        f"Scenario `{run['scenario']}` version {'unknown' if _missing(run['scenario_version']) else _fmt(run['scenario_version'])}, config hash `{str(run['config_hash'])[:16]}`, "
        f"status **{run['status']}**, {len(cells)} of {int(run['n_cells_planned'])} cells, "
        f"{', '.join(map(str, n_roll)) or '0'} rollouts per cell, on {device}.{status_note}",
        "",
        "## What this measures",
        "",
        "Each **cell** is one level x one method x one delay setup. Every rollout runs a flow-matching chunk policy "
        "in closed loop on a Kinetix level while inference delays are replayed from the setup's delay schedule: "
        "an inference started at step tau delivers its chunk d steps later, and meanwhile the robot keeps executing "
        "the old chunk. All methods of a setup see the same env seeds and the same delays (common random numbers), "
        "so differences between methods are paired. Only the first episode of each rollout counts. Methods are "
        "listed naive first, then in the order of Black et al. (2025); every figure is also written as an SVG.",
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
    dts = sorted({float(v) for v in cells["dt_ms"].dropna()})
    if jerk[["jerk_max_d1", "jerk_max_d2"]].notna().any().any():
        plot_jerk(jerk, dts[0] if len(dts) == 1 else None, out_dir / "jerk.png")
        lines += ["## Smoothness", "", "![jerk per method and setup](jerk.png)", ""]
    else:
        lines += ["## Smoothness", "", "No finite per-rollout jerk was stored (episodes too short).", ""]
    lines += [
        "Per rollout, on the executed actions a_t of the first episode (in the level's action units): the largest "
        "step change max ||a_t - a_{t-1}|| (d1) and the largest second difference max ||a_t - 2a_{t-1} + a_{t-2}|| "
        "(d2, the jerk proxy of Black et al. 2025). Boxes show the spread over rollouts (median line, quartiles, "
        "whiskers at 1.5 IQR); the table gives the mean over rollouts.",
        "",
        _md_table(cells, [("level", "level"), ("setup", "setup"), ("method", "method"), ("jerk_max_d1", "max d1"),
                          ("jerk_max_d2", "max d2"), ("jerk_mean_d1", "mean d1"), ("jerk_mean_d2", "mean d2")]),
        "",
        *_paired_section(cells, jerk),
        "## Delays",
        "",
    ]
    groups = schedule_groups(rates)
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
    lines += [
        "Percentiles are nearest-rank (a delay that occurred, never interpolated), in control steps with "
        "milliseconds in brackets.",
        "",
        _md_table(_delay_table(cells, delays, groups), [
            ("setup", "setup"), ("n", "inferences"), ("d_p50", "delay p50", str), ("d_p95", "delay p95", str),
            ("d_p99", "delay p99", str), ("d_max", "delay max", str), ("dhat_p50", "forecast p50", str),
            ("dhat_p95", "forecast p95", str), ("dhat_p99", "forecast p99", str),
            ("mean_exec_horizon", "mean execution horizon")]),
        "",
        "## Violations and stalls",
        "",
    ]
    plot_rates(groups, out_dir / "violations_stalls.png")
    lines += [
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
        _md_table(groups, [("setup", "setup"), ("methods", "methods"), ("violation_rate", "violation rate", _pct),
                           ("stall_frac", "stall fraction", _pct), ("forecast_miss_rate", "forecast-miss rate", _pct),
                           ("over_forecast_rate", "over-forecast rate", _pct),
                           ("mean_exec_horizon", "mean execution horizon")]),
        "",
        "## Cost",
        "",
        "Network forward passes (NFE) and vector-Jacobian products (VJP) per inference and per env step; wall ms "
        "per batched inference call (the median of the timed calls after warm-up, compile excluded, with their "
        "10th-90th percentile range; cells written before schema v4 have no range); rollout throughput; compile seconds, where **cached** means the cell reused the episode "
        "compiled for an earlier cell of the run (same computation) and spent no time compiling.",
        "",
        _md_table(cells, [("level", "level"), ("setup", "setup"), ("method", "method"),
                          ("nfe_per_inference", "NFE / inference"), ("vjp_per_inference", "VJP / inference"),
                          ("nfe_per_env_step", "NFE / env step"), ("inference_ms", "median ms / inference", _ms),
                          ("inference_ms_range", "ms p10-p90", str),
                          ("env_steps_per_s", "env steps / s"), ("compile_s", "compile s", _compile_s)]),
        "",
        "## Provenance",
        "",
        *_provenance(run, data["run"].columns),
        "",
        f"Reproduce the numbers with `rtcbench query --db {db_path or 'rtcbench.duckdb'} \"SELECT * FROM v_cells WHERE "
        f"run_id = '{run_id}'\"`.",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
