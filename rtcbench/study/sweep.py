"""Part 1 of the study page: the paper's constant-delay sweep (``bench/scenarios/fixed_sweep.yaml``), setups
``d0`` .. ``d4`` (s = max(d, 1)): solve rate and jerk against d per method, and the claims of
Black et al. (2025) judged by `rtcbench.study.claims`. Smoothness is `rtcbench.paired.SMOOTHNESS`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtcbench.paired import SMOOTHNESS, SMOOTHNESS_LABEL
from rtcbench.report.style import method_styles, save_figure
from rtcbench.study.claims import sweep_claims
from rtcbench.study.runs import SWEEP_METHODS, SWEEP_SETUPS, RunData, figure_slug, methods_present
from rtcbench.tables import MISSING, fmt, pyplot, solve_ci


def plot_sweep(data: RunData, level: str, methods: list[str], out: Path) -> None:
    """Solve rate (Wilson 95%) and jerk (`SMOOTHNESS`) against the delay d, one line per method, for one level."""
    plt = pyplot()
    fig, (ax, axj) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    ds = [int(s[1:]) for s in SWEEP_SETUPS]
    styles = method_styles(methods)
    for i, m in enumerate(methods):
        rows = [data.cell(level, s, m) for s in SWEEP_SETUPS]
        xs = [d + (i - len(methods) / 2) * 0.04 for d, r in zip(ds, rows, strict=True) if r is not None]
        kept = [r for r in rows if r is not None]
        if not kept:
            continue
        y = np.array([r["solve_rate"] for r in kept])
        lo = y - np.array([r["solve_ci_low"] for r in kept])
        hi = np.array([r["solve_ci_high"] for r in kept]) - y
        ax.errorbar(xs, y, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], marker="o", capsize=3, label=m,
                    color=styles[m].color)
        axj.plot(xs, [r[SMOOTHNESS] for r in kept], marker="o", label=m, color=styles[m].color)
    ax.set(xlabel="delay d (steps); s = max(d, 1)", ylabel="solve rate (Wilson 95%)", title=f"{level}: solve rate")
    axj.set(xlabel="delay d (steps)", ylabel="rollout mean of mean_t ||a_t - 2a_(t-1) + a_(t-2)||",
            title=f"jerk ({SMOOTHNESS_LABEL})")
    ax.set_xticks(ds)
    axj.set_xticks(ds)
    fig.legend(*ax.get_legend_handles_labels(), title="method", loc="outside lower center", ncols=len(methods),
               fontsize=8, title_fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    axj.grid(alpha=0.3)
    save_figure(fig, out)


def _solve_table(data: RunData, level: str, methods: list[str]) -> list[str]:
    """Solve rate [Wilson 95%] per method and d, and the drop from d0 to d4."""
    head = "| method | " + " | ".join(f"d={s[1:]}" for s in SWEEP_SETUPS) + " | d4 - d0 |"
    rows = [head, "|" + "---|" * (len(SWEEP_SETUPS) + 2)]
    for m in methods:
        cells = [data.cell(level, s, m) for s in SWEEP_SETUPS]
        drop = (f"{cells[-1]['solve_rate'] - cells[0]['solve_rate']:+.3f}"
                if cells[0] is not None and cells[-1] is not None else MISSING)
        rows.append(f"| {m} | " + " | ".join(solve_ci(c) for c in cells) + f" | {drop} |")
    return ["Solve rate [Wilson 95%] of the first episode:", "", *rows, ""]


def _jerk_table(data: RunData, level: str, methods: list[str]) -> list[str]:
    """The cells' jerk (`SMOOTHNESS`, mean over rollouts) per method and d."""
    rows = ["| method | " + " | ".join(f"d={s[1:]}" for s in SWEEP_SETUPS) + " |",
            "|" + "---|" * (len(SWEEP_SETUPS) + 1)]
    for m in methods:
        rows.append(f"| {m} | " + " | ".join(
            fmt(c[SMOOTHNESS]) if c is not None else MISSING
            for c in (data.cell(level, s, m) for s in SWEEP_SETUPS)) + " |")
    return [f"Jerk of the executed actions ({SMOOTHNESS_LABEL}), mean over rollouts:", "", *rows, ""]


def sweep_section(data: RunData, out_dir: Path) -> list[str]:
    """Part 1 of the page, one subsection (figure, tables, claims) per level."""
    lines = ["## 1. Sanity check: the paper's constant-delay sweep", ""]
    methods = methods_present(data, SWEEP_METHODS)
    for level in sorted(data.cells["level"].unique()):
        slug = figure_slug(level)
        plot_sweep(data, level, methods, out_dir / f"sweep_{slug}.png")
        lines += [f"### {level}", "", f"![solve rate and jerk against d on {level}](sweep_{slug}.png)", ""]
        lines += _solve_table(data, level, methods)
        lines += _jerk_table(data, level, methods)
        lines += sweep_claims(data, level, methods)
    return lines
