"""Part 2 of the study page: the tail matrix (``bench/scenarios/tail_matrix.yaml``), setups named
``PROFILE.HORIZON.FORECAST``, and its four questions:

- Q0: what each tail-control profile buys back against the long tail (``lt5``), per method;
- Q1: whether tail control changes the gap between a method and naive;
- Q2: which forecaster is worth its conservatism (against the oracle);
- Q3: whether the adaptive horizon pays off against a fixed clock.

Each comparison is paired (`rtcbench.paired`): rollout b of every cell shares its env seed. Jerk is
`rtcbench.paired.SMOOTHNESS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtcbench.paired import SMOOTHNESS, SMOOTHNESS_LABEL, gap_change, paired_jerk, paired_solve
from rtcbench.report.style import method_styles, save_figure
from rtcbench.study.runs import TAIL_BASELINE_SETUP, TAIL_METHODS, RunData, figure_slug, methods_present
from rtcbench.tables import MISSING, md_table, pyplot, solve_ci

PROFILE_NOTES = {
    "lt5": "long tail: 1-3 steps with 5% spikes of 6",
    "lt05": "tail-controlled: 0.5% spikes",
    "lt5cap4": "long tail under a 4-step cap",
    "lt5hedge2": "long tail, two hedged requests",
    "bursty": "bursty (Gilbert-Elliott, 5-7 step bursts)",
    "lt5drop": "long tail, 90% of spikes removed (drop_spikes)",
    "trace": "replayed synthetic bursty trace (bench/traces/synthetic_bursty.json)",
}
FORECASTS = ("oracle", "wmax", "wq95")
# (column, title) of the table of every cell of the tail matrix.
EVERY_CELL_COLUMNS = [
    ("setup", "setup"), ("method", "method"), ("solve", "solve [95% CI]"), ("d_p95", "d p95"), ("d_p99", "d p99"),
    ("violation_rate", "violation"), ("stall_frac", "stall"), ("forecast_miss_rate", "forecast miss"),
    ("over_forecast_rate", "over-forecast"), (SMOOTHNESS, "jerk mean d2"), ("jerk_max_d2", "jerk max d2"),
    ("nfe_per_inference", "NFE / inference"),
    ("vjp_per_inference", "VJP / inference"), ("nfe_per_env_step", "NFE / env step"), ("mean_exec_horizon", "mean s"),
]


def split_setup(setup: str) -> tuple[str, str, str]:
    """``PROFILE.HORIZON.FORECAST`` -> its three parts; (setup, "", "") for another name."""
    parts = setup.split(".")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (setup, "", "")


def plot_tail(data: RunData, level: str, setups: list[str], methods: list[str], out: Path, title: str) -> None:
    """Solve rate (Wilson 95%) per setup, one bar per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(setups)), 4.4), layout="constrained")
    width = 0.8 / max(len(methods), 1)
    styles = method_styles(methods)
    for i, m in enumerate(methods):
        xs, ys, los, his = [], [], [], []
        for j, s in enumerate(setups):
            r = data.cell(level, s, m)
            if r is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(r["solve_rate"])
            los.append(max(r["solve_rate"] - r["solve_ci_low"], 0))
            his.append(max(r["solve_ci_high"] - r["solve_rate"], 0))
        ax.bar(xs, ys, width=width, yerr=[los, his], capsize=2, label=m, color=styles[m].color,
               hatch=styles[m].hatch, edgecolor="#333333", linewidth=0.6)
    ax.set_xticks(range(len(setups)))
    ax.set_xticklabels(setups, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="solve rate (Wilson 95%)", title=title)
    ax.set_ylim(0, 1.05)
    fig.legend(*ax.get_legend_handles_labels(), title="method", loc="outside lower center", ncols=len(methods),
               fontsize=8, title_fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, out)


def tail_section(data: RunData, out_dir: Path) -> list[str]:
    """Part 2 of the page, one subsection (figure, Q0-Q3, every cell) per level."""
    lines = ["## 2. The tail matrix", ""]
    methods = methods_present(data, TAIL_METHODS)
    for level in sorted(data.cells["level"].unique()):
        slug = figure_slug(level)
        setups = sorted(data.cells[data.cells.level == level]["setup"].unique())
        profiles = [p for p in PROFILE_NOTES if any(split_setup(s)[0] == p for s in setups)]
        profiles += sorted({split_setup(s)[0] for s in setups} - set(profiles))
        main = [f"{p}.adaptive.wmax" for p in profiles if f"{p}.adaptive.wmax" in setups]
        plot_tail(data, level, main, methods, out_dir / f"tail_{slug}.png",
                  f"{level}: adaptive horizon (s_min 3), window-max forecast")
        lines += [f"### {level}", "", f"![solve rate per profile and method on {level}](tail_{slug}.png)", "",
                  "Profiles: " + "; ".join(f"`{p}` {PROFILE_NOTES.get(p, '')}" for p in profiles) + ".", ""]
        lines += _tail_q0(data, level, profiles, methods)
        lines += _tail_q1(data, level, profiles, methods)
        lines += _tail_q2(data, level, profiles, methods)
        lines += _tail_q3(data, level, profiles, methods)
        frame = data.cells[data.cells.level == level].copy()
        frame["solve"] = frame.apply(solve_ci, axis=1)
        lines += ["<details><summary>Every cell of the tail matrix</summary>", "",
                  md_table(frame, EVERY_CELL_COLUMNS), "", "</details>", ""]
    return lines


def _tail_q0(data: RunData, level: str, profiles: list[str], methods: list[str]) -> list[str]:
    """What each profile buys back (or costs) against the long tail, per method. Rollout b of both cells shares
    its env seed (initial state, action noise); the delay schedules differ, which is the treatment."""
    base_setup = TAIL_BASELINE_SETUP
    if data.cell(level, base_setup, methods[0]) is None:
        return []
    lines = ["**Q0. What does each tail-control mechanism buy back?** Adaptive horizon, window-max forecast. "
             "Each profile's solve rate minus the long tail's (`lt5`), same env seeds, McNemar p. `lt05` stands "
             "for a serving stack that removes 90% of the spikes, `bursty` is a harsher profile, not a remedy.", ""]
    rows = ["| profile | " + " | ".join(f"{m} | {m} - lt5" for m in methods) + " |",
            "|" + "---|" * (1 + 2 * len(methods))]
    for p in profiles:
        setup = f"{p}.adaptive.wmax"
        parts = [p]
        for m in methods:
            base, cand = data.rollouts(level, base_setup, m), data.rollouts(level, setup, m)
            if cand is None or base is None:
                parts += [MISSING, MISSING]
                continue
            parts += [solve_ci(data.cell(level, setup, m)), MISSING if p == "lt5" else paired_solve(base, cand).text()]
        rows.append("| " + " | ".join(parts) + " |")
    return lines + rows + [""]


def _tail_q1(data: RunData, level: str, profiles: list[str], methods: list[str]) -> list[str]:
    """The gap of each method to naive under each profile, and its change against the long tail."""
    lines = ["**Q1. Does tail control change the gap between methods?** Adaptive horizon, window-max forecast. "
             "Gap = method - naive (McNemar p); change = the gap under this profile minus under `lt5`, a paired "
             "bootstrap 95% interval (* = excludes 0).", ""]
    others = [m for m in methods if m != "naive"]
    head = "| profile | naive | " + " | ".join(f"{m} | gap {m} | change vs lt5" for m in others) + " |"
    rows = [head, "|" + "---|" * (2 + 3 * len(others))]
    base_setup = TAIL_BASELINE_SETUP
    for p in profiles:
        setup = f"{p}.adaptive.wmax"
        naive = data.rollouts(level, setup, "naive")
        if naive is None:
            continue
        parts = [p, solve_ci(data.cell(level, setup, "naive"))]
        for m in others:
            cand = data.rollouts(level, setup, m)
            if cand is None:
                parts += [MISSING, MISSING, MISSING]
                continue
            gap = paired_solve(naive, cand)
            change = MISSING
            if p != "lt5" and data.rollouts(level, base_setup, m) is not None:
                change = gap_change(cand, naive, data.rollouts(level, base_setup, m),
                                    data.rollouts(level, base_setup, "naive"))
            parts += [solve_ci(data.cell(level, setup, m)), gap.text(), change]
        rows.append("| " + " | ".join(parts) + " |")
    return lines + rows + [""]


def _forecaster_row(data: RunData, level: str, p: str, m: str) -> str | None:
    """One row of Q2: the window forecasts of one profile and method against the oracle's cell."""
    cells = {f: data.cell(level, f"{p}.adaptive.{f}", m) for f in FORECASTS}
    outs = {f: data.rollouts(level, f"{p}.adaptive.{f}", m) for f in cells}
    if outs["oracle"] is None:
        return None
    parts = [p, m, solve_ci(cells["oracle"])]
    for f in ("wmax", "wq95"):
        if outs[f] is None:
            parts += [MISSING, MISSING, MISSING]
            continue
        parts += [paired_solve(outs["oracle"], outs[f]).text(), paired_jerk(outs["oracle"], outs[f]),
                  f"{cells[f]['forecast_miss_rate']:.3f} / {cells[f]['over_forecast_rate']:.3f}"]
    parts.append(paired_solve(outs["wmax"], outs["wq95"]).text()
                 if outs["wmax"] is not None and outs["wq95"] is not None else MISSING)
    return "| " + " | ".join(parts) + " |"


def _naive_forecast_check(data: RunData, level: str, profiles: list[str]) -> list[str]:
    """`naive` freezes no prefix, so its three forecast cells of a profile must agree rollout by rollout."""
    naive_check = []
    for p in profiles:
        outs = [data.rollouts(level, f"{p}.adaptive.{f}", "naive") for f in ("wmax", "wq95", "oracle")]
        if all(o is not None for o in outs):
            same = all(np.array_equal(outs[0]["solved"].to_numpy(bool), o["solved"].to_numpy(bool))
                       and all(np.array_equal(outs[0][c].to_numpy(float), o[c].to_numpy(float), equal_nan=True)
                               for c in (SMOOTHNESS, "jerk_max_d2")) for o in outs[1:])
            naive_check.append(f"`{p}` {'identical' if same else '**DIFFERENT**'}")
    if not naive_check:
        return []
    return ["", "Check: `naive` uses no prefix, so its three forecast cells of a profile must agree rollout by "
            "rollout: " + ", ".join(naive_check) + "."]


def _tail_q2(data: RunData, level: str, profiles: list[str], methods: list[str]) -> list[str]:
    """Each window forecaster against the oracle, per profile and method, and the naive check."""
    lines = ["**Q2. Which forecaster is worth its conservatism?** Adaptive horizon. Each forecast against the "
             "oracle (the true delay) on the same rollouts: solve-rate difference (McNemar p) and jerk difference "
             f"({SMOOTHNESS_LABEL}; bootstrap 95%, * = excludes 0); miss = P(d > dhat), over = P(d < dhat).", ""]
    rows = ["| profile | method | oracle | wmax - oracle | wmax jerk - oracle | wmax miss / over | wq95 - oracle | "
            "wq95 jerk - oracle | wq95 miss / over | wq95 - wmax |", "|" + "---|" * 10]
    for p in profiles:
        for m in methods:
            if m == "naive":
                continue
            row = _forecaster_row(data, level, p, m)
            if row is not None:
                rows.append(row)
    rows += _naive_forecast_check(data, level, profiles)
    return lines + rows + [""]


def _tail_q3(data: RunData, level: str, profiles: list[str], methods: list[str]) -> list[str]:
    """The adaptive horizon against a fixed 3-step clock, per profile run with both, and method."""
    pairs = [p for p in profiles if data.cell(level, f"{p}.clock.wmax", methods[0]) is not None]
    if not pairs:
        return []
    lines = ["**Q3. Does the adaptive horizon pay off under tails?** Window-max forecast; adaptive (start as "
             "soon as the last chunk has landed and s >= 3) against a fixed 3-step clock (start only on a tick). "
             "Profiles whose delays are all <= 3 or multiples of 3 give the two the same timeline and are not run "
             f"with the clock. Jerk: {SMOOTHNESS_LABEL} (bootstrap 95%, * = excludes 0).", ""]
    rows = ["| profile | method | clock | adaptive | adaptive - clock | jerk adaptive - clock | stall clock / adaptive "
            "| mean s clock / adaptive |", "|" + "---|" * 8]
    for p in pairs:
        for m in methods:
            ca, cc = data.cell(level, f"{p}.adaptive.wmax", m), data.cell(level, f"{p}.clock.wmax", m)
            oa, oc = data.rollouts(level, f"{p}.adaptive.wmax", m), data.rollouts(level, f"{p}.clock.wmax", m)
            if ca is None or cc is None:
                continue
            rows.append(f"| {p} | {m} | {solve_ci(cc)} | {solve_ci(ca)} | {paired_solve(oc, oa).text()} | "
                        f"{paired_jerk(oc, oa)} | {cc['stall_frac']:.3f} / {ca['stall_frac']:.3f} | "
                        f"{cc['mean_exec_horizon']:.2f} / {ca['mean_exec_horizon']:.2f} |")
    return lines + rows + [""]
