"""The delays of a run as `rtcbench report` shows them: the survival figure of the drawn delays and their
forecasts per setup, and the table of their nearest-rank percentiles (from ``delay_survival.sql``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rtcbench.report.style import BLACK, SETUP_COLORS, save_figure
from rtcbench.stats import nearest_rank_percentile
from rtcbench.tables import MISSING, fmt, is_missing, ms, pyplot


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
    """Setups whose counted distributions are equal, grouped, in first-seen order."""
    groups: dict[tuple, list[str]] = {}
    for setup, (values, counts) in dists.items():
        groups.setdefault((tuple(values.tolist()), tuple(counts.tolist())), []).append(setup)
    return list(groups.values())


def _curve_label(kind: str, group: list[str], values: np.ndarray, counts: np.ndarray) -> str:
    p50, p95, p99 = percentiles(values, counts)
    return (f"{kind} {', '.join(group)}: p50 {p50}, p95 {p95}, p99 {p99}, max {int(values.max())}"
            f" (n = {int(counts.sum()):,})")


def _same_distribution(a, b) -> bool:
    return a is not None and b is not None and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _survival_curves(ax, delays: pd.DataFrame, x_left: float) -> None:
    """Solid steps for the drawn delays (one per group of setups with the same draws), dashed for forecasts."""
    dists = delay_distributions(delays)
    setups = list(dict.fromkeys(delays["setup"]))
    color = {s: SETUP_COLORS[i % len(SETUP_COLORS)] for i, s in enumerate(setups)}
    delay_d = {s: dists[(s, "delay")] for s in setups if (s, "delay") in dists}
    forecast_d = {s: dists[(s, "forecast")] for s in setups if (s, "forecast") in dists}
    # A forecast equal to its setup's delay (the oracle, a fixed delay with a matching forecast) would be drawn
    # exactly on a curve of its own colour: it is named in that curve's label instead.
    folded = set()
    for group in _group_same(delay_d):
        values, counts = delay_d[group[0]]
        xs, ys = _survival_xy(values, counts, x_left)
        text = _curve_label("delay", group, values, counts) + (" (same draws)" if len(group) > 1 else "")
        if len(group) == 1 and _same_distribution(forecast_d.get(group[0]), delay_d[group[0]]):
            folded.add(group[0])
            text += "; its forecast dhat is the same"
        ax.step(xs, ys, where="post", color=color[group[0]] if len(group) == 1 else BLACK, lw=2.6, alpha=0.85,
                label=text, zorder=2)
    for group in _group_same({s: d for s, d in forecast_d.items() if s not in folded}):
        values, counts = forecast_d[group[0]]
        xs, ys = _survival_xy(values, counts, x_left)
        note = " (= the delay)" if all(_same_distribution(delay_d.get(s), forecast_d[s]) for s in group) else ""
        ax.step(xs, ys, where="post", color=color[group[0]], lw=1.5, ls=(0, (5, 2)), marker="o", ms=3.5,
                label=_curve_label("forecast", group, values, counts) + note, zorder=3)


def _survival_axes(ax, delays: pd.DataFrame, x_left: float) -> None:
    """Log y with the 5% and 1% tail lines, x in steps (and ms on top when one step length), H marked."""
    from matplotlib.ticker import MaxNLocator

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
        top = ax.secondary_xaxis("top", functions=(lambda s: s * dt, lambda x_ms: x_ms / dt))
        top.set_xlabel(f"x in milliseconds (one step = {dt:g} ms)")


def plot_delay_survival(delays: pd.DataFrame, out: Path) -> list[Path]:
    """Survival P(delay > x) of the drawn delays per setup (solid) and of their forecasts dhat (dashed), log y,
    steps below and ms above. Setups with the same draws share one delay curve, so no curve hides another;
    the forecasts tell them apart."""
    plt = pyplot()
    x_left = min(0.0, float(delays["value"].min())) - 0.5
    fig, ax = plt.subplots(figsize=(9, 5.6), layout="constrained")
    _survival_curves(ax, delays, x_left)
    _survival_axes(ax, delays, x_left)
    ax.set_title("Tail of the inference delays per setup: P(delay > x) solid, P(forecast dhat > x) dashed\n"
                 "(asynchronous inferences k >= 1; percentiles nearest-rank)", fontsize=10)
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.12, which="minor", axis="y")
    fig.legend(loc="outside lower center", fontsize=7.5, frameon=False)
    return save_figure(fig, out)


def _steps_and_ms(steps, dt) -> str:
    """A number of steps with its milliseconds in brackets: ``2 (66.6 ms)``; steps alone without a step length."""
    if is_missing(steps):
        return MISSING
    return f"{fmt(float(steps))} ({ms(float(steps) * dt)} ms)" if not is_missing(dt) else fmt(float(steps))


def delay_table(cells: pd.DataFrame, delays: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per setup: delay and forecast percentiles (nearest-rank), in steps and ms, and the mean horizon.
    Percentiles come from the per-inference delays where stored, else from the cell's stored statistics."""
    dists = delay_distributions(delays) if not delays.empty else {}
    rows = []
    for _, cell in cells.drop_duplicates("setup").iterrows():
        setup, dt = cell["setup"], cell["dt_ms"]
        row = {"setup": setup}
        if (setup, "delay") in dists:
            values, counts = dists[(setup, "delay")]
            d50, d95, d99 = percentiles(values, counts)
            row |= {"n": int(counts.sum()), "d_p50": _steps_and_ms(d50, dt), "d_p95": _steps_and_ms(d95, dt),
                    "d_p99": _steps_and_ms(d99, dt), "d_max": _steps_and_ms(values.max(), dt)}
        else:
            row |= {"n": None, **{k: _steps_and_ms(cell[k], dt) for k in ("d_p50", "d_p95", "d_p99", "d_max")}}
        if (setup, "forecast") in dists:
            values, counts = dists[(setup, "forecast")]
            f50, f95, f99 = percentiles(values, counts)
            row |= {"dhat_p50": _steps_and_ms(f50, dt), "dhat_p95": _steps_and_ms(f95, dt),
                    "dhat_p99": _steps_and_ms(f99, dt)}
        else:
            row |= {"dhat_p50": _steps_and_ms(cell["dhat_p50"], dt), "dhat_p95": _steps_and_ms(cell["dhat_p95"], dt),
                    "dhat_p99": MISSING}
        horizon = groups[groups["setup"] == setup]["mean_exec_horizon"]
        row["mean_exec_horizon"] = horizon.iloc[0] if len(horizon) else cell["mean_exec_horizon"]
        rows.append(row)
    return pd.DataFrame(rows)
