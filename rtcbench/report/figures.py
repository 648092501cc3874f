"""The figures of `rtcbench report` per run: solve rate, per-rollout jerk, and violation and stall rates.

Each figure is written as a PNG and an SVG (`rtcbench.report.style.save_figure`), methods in the report's
order and colours; the delay survival figure is in `rtcbench.report.delays`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rtcbench.paired import SMOOTHNESS
from rtcbench.report.style import RATE_STYLES, method_styles, ordered_methods, save_figure, split_family
from rtcbench.tables import pct, pyplot

RATE_COLUMNS = ("violation_rate", "forecast_miss_rate", "over_forecast_rate", "stall_frac")
RATE_TITLES = {"violation_rate": "violation (d > H - s)", "forecast_miss_rate": "forecast miss (d > dhat)",
               "over_forecast_rate": "over-forecast (d < dhat)", "stall_frac": "stall steps"}
# The rates counted per inference (the left panel of the rates figure); the stall fraction is per step.
PER_INFERENCE_RATES = ("violation_rate", "forecast_miss_rate", "over_forecast_rate")
# (column of jerk.sql, panel title, y label) of the two box-plot panels of the jerk figure: the smoothness
# statistic (`rtcbench.paired.SMOOTHNESS`, also the findings' and the paired tests'), then the per-rollout
# maximum of the same second difference, the proxy of Black et al. (2025), which grows with episode length.
JERK_PANELS = (
    (SMOOTHNESS, "jerk: mean |second difference| per step",
     r"mean$_t\,\|a_t - 2a_{t-1} + a_{t-2}\|$" + "\n(action units per step², used dims)"),
    ("jerk_max_d2", "max |second difference| per rollout",
     r"max$_t\,\|a_t - 2a_{t-1} + a_{t-2}\|$" + "\n(action units per step², used dims)"),
)


def grouped_positions(n_groups: int, n_bars: int, width_total: float = 0.8):
    """Bars side by side in groups -> (group centres [n_groups], bar offsets [n_bars], bar width)."""
    width = width_total / max(n_bars, 1)
    offsets = (np.arange(n_bars) - (n_bars - 1) / 2) * width
    return np.arange(n_groups), offsets, width


def method_legend(fig, methods: list[str], styles) -> None:
    """One legend for the whole figure, below the panels, so it never covers data."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=styles[m].color, hatch=styles[m].hatch, edgecolor="#333333", label=m) for m in methods]
    families = list(dict.fromkeys(split_family(m)[0] for m in methods))
    # entries fill columns first: one column per family of an ablation, else up to six in a row
    ncols = len(families) if len(families) > 1 else min(len(methods), 6)
    fig.legend(handles=handles, title="method", loc="outside lower center", ncols=ncols, fontsize=8,
               title_fontsize=8, frameon=False)


def _solve_rate_panel(ax, sub: pd.DataFrame, level: str, methods: list[str], styles) -> None:
    """One level's bars: solve rate per setup and method, Wilson 95% error bars, the rate written above."""
    setups = list(dict.fromkeys(sub["setup"]))
    x, offsets, width = grouped_positions(len(setups), len(methods))
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


def plot_solve_rate(cells: pd.DataFrame, out: Path) -> list[Path]:
    """Solve rate per setup and method, one panel per level (cells.sql rows) -> the files written."""
    plt = pyplot()
    levels = list(dict.fromkeys(cells["level"]))
    methods = ordered_methods(cells["method"])
    styles = method_styles(methods)
    n_setups = cells["setup"].nunique()
    fig, axes = plt.subplots(len(levels), 1, figsize=(max(7.0, 0.32 * len(methods) * n_setups + 2.5),
                                                      3.6 * len(levels) + 0.9), squeeze=False, layout="constrained")
    for ax, level in zip(axes[:, 0], levels, strict=True):
        _solve_rate_panel(ax, cells[cells["level"] == level], level, methods, styles)
    method_legend(fig, methods, styles)
    return save_figure(fig, out)


def _jerk_boxes(ax, sub: pd.DataFrame, metric: str, setups: list[str], methods: list[str], styles) -> None:
    """Box plots of one per-rollout jerk column, a group of boxes per setup, one box per method."""
    import matplotlib.patheffects as pe

    x, offsets, width = grouped_positions(len(setups), len(methods))
    # a white median with a black outline is visible on every fill colour
    median = {"color": "white", "linewidth": 1.6,
              "path_effects": [pe.Stroke(linewidth=3.2, foreground="black"), pe.Normal()]}
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


def plot_jerk(jerk: pd.DataFrame, dt_ms: float | None, out: Path) -> list[Path]:
    """Per-rollout jerk (jerk.sql rows) as box plots, the `JERK_PANELS` of every level -> the files written."""
    plt = pyplot()
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
    step = f"step = {dt_ms:g} ms" if dt_ms else "one control step"
    for row_axes, level in zip(axes, levels, strict=True):
        sub = jerk[jerk["level"] == level]
        setups = list(dict.fromkeys(sub["setup"]))
        for ax, (metric, title, ylabel) in zip(row_axes, JERK_PANELS, strict=True):
            _jerk_boxes(ax, sub, metric, setups, methods, styles)
            ax.set_ylabel(ylabel, fontsize=9)
            ax.set_xlabel(f"delay setup ({step}; lower is smoother)")
            ax.set_title(f"{level}: {title}", fontsize=9.5)
            ax.grid(axis="y", alpha=0.3)
    method_legend(fig, methods, styles)
    return save_figure(fig, out)


def _rate_bars(ax_inf, ax_step, groups: pd.DataFrame) -> None:
    """The bars of the rates figure: per-inference rates side by side (left), the stall fraction (right)."""
    x, offsets, width = grouped_positions(len(groups), len(PER_INFERENCE_RATES))
    for j, col in enumerate(PER_INFERENCE_RATES):
        values = groups[col].to_numpy(float)
        color, hatch = RATE_STYLES[col]
        bars = ax_inf.bar(x + offsets[j], values, width, color=color, hatch=hatch, edgecolor="#333333", lw=0.6)
        ax_inf.bar_label(bars, labels=[pct(v) for v in values], padding=1, fontsize=6.5, rotation=90)
    color, hatch = RATE_STYLES["stall_frac"]
    values = groups["stall_frac"].to_numpy(float)
    bars = ax_step.bar(x, values, 0.6, color=color, hatch=hatch, edgecolor="#333333", lw=0.6)
    ax_step.bar_label(bars, labels=[pct(v) for v in values], padding=1, fontsize=6.5, rotation=90)


def plot_rates(groups: pd.DataFrame, out: Path) -> list[Path]:
    """Violation, forecast-miss, over-forecast and stall rates, one group of bars per distinct schedule
    (`rtcbench.report.sections.schedule_groups`) -> the files written."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    plt = pyplot()
    n = len(groups)
    fig, (ax_inf, ax_step) = plt.subplots(1, 2, figsize=(max(8.0, 1.9 * n + 3.5), 4.8),
                                          width_ratios=[3, max(1.3, 0.6 * n)], layout="constrained")
    _rate_bars(ax_inf, ax_step, groups)
    x = np.arange(n)
    for ax, cols, title, ylabel in (
            (ax_inf, PER_INFERENCE_RATES, "per inference (k >= 1)", "share of inferences"),
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
               for c in (*PER_INFERENCE_RATES, "stall_frac")]
    fig.suptitle("Timeline failures of each delay schedule (one group per setup: its methods share the schedule)",
                 fontsize=10)
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return save_figure(fig, out)
