"""The modality ablation of the study (issue #14): how RTC's advantage over naive chunking depends on how
multimodal the cloned policy is.

Input: one run (``bench/scenarios/ablation_modality.yaml``, or any run whose method labels are
``FAMILY.METHOD``): every policy family (a BC checkpoint made with some number of experts and a label
mode) runs naive, soft RTC (``rtc_exp``), hard RTC (``rtc_hard``) and BID-16 (``bid16``) at constant
delays ``d2``, ``d3``, ``d4`` (s = d). Each family's modality and data (experts, label) are read from
what every cell recorded of its checkpoint's sidecar (``cell_config.policy``), so the page needs nothing
but the results file.

**The decision rule, fixed before any ablation cell was run**, is `rtcbench.study.rules.paper_ordering`
(its docstring states it), applied to each family's cells; the constant-delay sweep's claims table applies
the same function to plain method names. Every family run is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rtcbench.paired import SMOOTHNESS_LABEL, interval_text, paired_solve
from rtcbench.report.style import SETUP_COLORS, save_figure, split_family
from rtcbench.shipped import modality_value
from rtcbench.stats import paired_bootstrap
from rtcbench.study.rules import ORDERING_RULE, RULE_SETUPS, no_soft_band, paper_ordering
from rtcbench.study.runs import RunData, figure_slug
from rtcbench.tables import MISSING, pyplot

ABLATION_SCENARIO = "ablation_modality"
ABLATION_METHODS = ("naive", "rtc_exp", "rtc_hard", "bid16")
ABLATION_SETUPS = ("d2", "d3", "d4")
# Read with `modality_value`: sidecars measured before issue #23 record stochasticity as `spread` and have no
# bimodal share (a dash in the tables, no panel in the gap figure).
MODALITY_KEYS = ("stochasticity", "bimodal_share", "sign_disagreement", "boundary_disagreement")
MODALITY_HEADERS = {"stochasticity": "stochasticity", "bimodal_share": "bimodal share",
                    "sign_disagreement": "sign disagreement", "boundary_disagreement": "boundary disagreement"}
MODALITY_AXES = {
    "stochasticity": "stochasticity (same-obs. / different-obs. chunk distance)",
    "bimodal_share": "bimodal share (2-Gaussian BIC gain > 10)",
    "sign_disagreement": "first-action sign disagreement",
    "boundary_disagreement": "boundary disagreement (naive, d = s = 4)",
}
INTRO = [
    "## Modality ablation: does RTC's advantage grow with policy multimodality?", "",
    "Each policy family is a BC checkpoint of the same level, size and training, made from different "
    "demonstrations (how many expert seeds, mean or sampled labels). Its modality is measured on the "
    "checkpoint (`rtcbench policy modality`, 128 held-out closed-loop observations x 16 chunks, "
    "bootstrap 95% intervals over observations): *stochasticity* (recorded as *spread* by sidecars measured "
    "before issue #23) = mean distance between chunks sampled at one observation / between chunks at different "
    "observations; *bimodal share* = share of observations whose 16 first actions two Gaussians fit better than "
    "one (BIC gain > 10; a dash where the sidecar predates it); *sign* = share of same-observation pairs "
    "whose first actions disagree in sign; *boundary* = mean |B_i - A_(s+i)| between consecutive naive "
    "chunks at d = s = 4, aligned in time. Stochasticity and sign disagreement are high for a wide single "
    "peak too; the bimodal share counts modes.", "",
    "Decision rule, fixed before the runs (issue #14; `paper_ordering` in rtcbench/study/rules.py), applied to "
    f"each family's cells: {ORDERING_RULE}. With H = 8 and s = d, d = 4 has no soft band: there soft and hard "
    "RTC are one computation.", "",
]


def split_label(label: str) -> tuple[str, str] | None:
    """``FAMILY.METHOD`` -> (family, method); None for a label without a family."""
    family, method = split_family(label)
    return (family, method) if family else None


def families(data: RunData) -> list[str]:
    """Families in the order their first method appears in the run's cells."""
    seen: list[str] = []
    for label in data.cells["method"]:
        parts = split_label(label)
        if parts is not None and parts[0] not in seen:
            seen.append(parts[0])
    return seen


def family_policy(data: RunData, level: str, family: str) -> dict:
    """What the family's cells recorded of their checkpoint (its `naive` cell, else any)."""
    rows = data.cells[(data.cells.level == level) & data.cells["method"].str.startswith(family + ".")]
    for _, row in rows.iterrows():
        cfg = json.loads(row["cell_config"]) if isinstance(row["cell_config"], str) else {}
        if cfg.get("policy"):
            return cfg["policy"]
    return {}


def decide(data: RunData, level: str, family: str) -> dict:
    """The pre-registered rule (`paper_ordering`) on one family's cells."""
    return paper_ordering(lambda method, setup: data.rollouts(level, setup, f"{family}.{method}"),
                          no_soft_band(data, level, family))


def _mod(policy: dict, key: str) -> str:
    """One modality measure of a policy with its 95% interval, or a dash when it was not measured."""
    m = modality_value(policy, key)
    if not m:
        return MISSING
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def gap_points(data: RunData, level: str, fams: list[str], setup: str = "d4") -> pd.DataFrame:
    """One row per family and modality measure it records (`MODALITY_KEYS`): the measure (and its CI) against
    soft - naive at ``setup`` (and its paired bootstrap CI). Columns: measure, family, x, x_lo, x_hi, gap,
    gap_lo, gap_hi."""
    rows = []
    for fam in fams:
        policy = family_policy(data, level, fam)
        naive, soft = data.rollouts(level, setup, f"{fam}.naive"), data.rollouts(level, setup, f"{fam}.rtc_exp")
        measures = {k: m for k in MODALITY_KEYS if (m := modality_value(policy, k)) is not None}
        if not measures or naive is None or soft is None:
            continue
        boot = paired_bootstrap(naive["solved"].to_numpy(float), soft["solved"].to_numpy(float), seed=0)
        for key, m in measures.items():
            rows.append({"measure": key, "family": fam, "x": m["value"], "x_lo": m["ci95"][0], "x_hi": m["ci95"][1],
                         "gap": boot.diff, "gap_lo": boot.low, "gap_hi": boot.high})
    return pd.DataFrame(rows)


def plot_gap(points: pd.DataFrame, level: str, setup: str, out: Path) -> None:
    """Soft RTC - naive at ``setup`` against each modality measure the families record (one panel per
    measure, in `MODALITY_KEYS` order), both with 95% intervals."""
    plt = pyplot()
    measures = [k for k in MODALITY_KEYS if k in set(points["measure"])]
    cols = min(2, len(measures))
    rows = -(-len(measures) // cols)
    fams = list(dict.fromkeys(points["family"]))  # one colour per family in every panel
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.0 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for i, (ax, key) in enumerate(zip(axes.flat, measures, strict=False)):
        ax.axhline(0.0, color="0.5", lw=1)
        for _, p in points[points["measure"] == key].iterrows():
            ax.errorbar([p["x"]], [p["gap"]], xerr=[[p["x"] - p["x_lo"]], [p["x_hi"] - p["x"]]],
                        yerr=[[p["gap"] - p["gap_lo"]], [p["gap_hi"] - p["gap"]]], fmt="o", capsize=3,
                        color=SETUP_COLORS[fams.index(p["family"]) % len(SETUP_COLORS)])
            ax.annotate(p["family"], (p["x"], p["gap"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if key == "bimodal_share":  # a share of observations, 0 to 1: none to all bimodal
            ax.set_xlim(-0.05, 1.05)
        ax.set(xlabel=f"{MODALITY_AXES[key]}, 95% CI")
        if i % cols == 0:
            ax.set_ylabel(f"soft RTC - naive at {setup} (paired 95% CI)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(measures):]:
        ax.set_visible(False)
    fig.suptitle(f"{level}: RTC's advantage against policy modality")
    save_figure(fig, out)


def dose_rows(data: RunData, level: str, fams: list[str]) -> list[dict]:
    """The K dose: families with sampled labels that keep every episode, one per expert count K, by K.
    -> [{family, K, policy, setup: (naive rate, soft rate, McNemar soft - naive, paired bootstrap of it)}]
    (empty below 3 doses)."""
    rows = []
    for fam in fams:
        pol = family_policy(data, level, fam)
        dat = pol.get("data") or {}
        if dat.get("label") != "sample" or dat.get("keep") != "all" or not dat.get("n_experts"):
            continue
        row = {"family": fam, "K": int(dat["n_experts"]), "policy": pol}
        for s in ABLATION_SETUPS:
            n, c = data.rollouts(level, s, f"{fam}.naive"), data.rollouts(level, s, f"{fam}.rtc_exp")
            row[s] = None if n is None or c is None else (
                float(n["solved"].mean()), float(c["solved"].mean()), paired_solve(n, c),
                paired_bootstrap(n["solved"].to_numpy(float), c["solved"].to_numpy(float), seed=0))
        rows.append(row)
    if len({r["K"] for r in rows}) != len(rows):  # two families with one K: no single dose curve
        return []
    return sorted(rows, key=lambda r: r["K"]) if len(rows) >= 3 else []


def plot_dose(rows: list[dict], level: str, out: Path) -> None:
    """Soft RTC - naive (paired 95% CI) at each rule setup against the number of expert seeds K."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhline(0.0, color="0.5", lw=1)
    for i, s in enumerate(ABLATION_SETUPS):
        pts = [(r["K"], r[s][3]) for r in rows if r[s] is not None]  # paired bootstrap of soft - naive
        if not pts:
            continue
        x = [k * (1.0 + 0.04 * (i - 1)) for k, _ in pts]  # a small dodge so that the intervals do not overlap
        y = [p.diff for _, p in pts]
        err = [[p.diff - p.low for _, p in pts], [p.high - p.diff for _, p in pts]]
        ax.errorbar(x, y, yerr=err, fmt=("o-", "s--", "^:")[i % 3], capsize=3, color=SETUP_COLORS[i],
                    label=f"d = s = {s[1:]}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["K"] for r in rows}), [str(k) for k in sorted({r["K"] for r in rows})])
    ax.set(xlabel="expert seeds K behind the demonstrations (sampled labels, every episode kept)",
           ylabel="soft RTC - naive solve rate (paired 95% CI)", title=f"{level}: the K dose")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    save_figure(fig, out)


def _policies_table(data: RunData, level: str, fams: list[str]) -> list[str]:
    """Each family's data (experts, label, keep), d=0 solve rate and modality measures."""
    head = ("| family | experts | label | keep | d=0 solve | "
            + " | ".join(MODALITY_HEADERS[k] for k in MODALITY_KEYS) + " |")
    rows = [head, "|---|---|---|---|---|" + "---|" * len(MODALITY_KEYS)]
    for fam in fams:
        pol = family_policy(data, level, fam)
        dat = pol.get("data") or {}
        d0 = pol.get("solve_rate_d0")
        rows.append(f"| {fam} | {dat.get('n_experts', '–')} | {dat.get('label', '–')} | {dat.get('keep', '–')} | "
                    f"{'–' if d0 is None else f'{d0:.3f}'} | " + " | ".join(_mod(pol, k) for k in MODALITY_KEYS)
                    + " |")
    return ["Policies:", "", *rows, ""]


def _solve_table(data: RunData, level: str, fams: list[str]) -> list[str]:
    """Solve rate [Wilson 95%] of every family and method at each ablation setup."""
    head = "| family | method | " + " | ".join(f"d={s[1:]}" for s in ABLATION_SETUPS) + " |"
    rows = [head, "|---|---|" + "---|" * len(ABLATION_SETUPS)]
    for fam in fams:
        for m in ABLATION_METHODS:
            cells = [data.cell(level, s, f"{fam}.{m}") for s in ABLATION_SETUPS]
            if all(c is None for c in cells):
                continue
            rows.append(f"| {fam} | {m} | " + " | ".join(
                MISSING if c is None else f"{c['solve_rate']:.3f} [{c['solve_ci_low']:.3f}, {c['solve_ci_high']:.3f}]"
                for c in cells) + " |")
    return ["Solve rate [Wilson 95%] (s = d, 512 paired rollouts per cell unless the run says otherwise):", "",
            *rows, ""]


def _verdict_table(data: RunData, level: str, fams: list[str]) -> list[str]:
    """Soft RTC against naive per setup, the jerk difference at d4, and the rule's verdict per family."""
    head = ("| family | " + " | ".join(f"soft - naive d={s[1:]}" for s in ABLATION_SETUPS)
            + " | jerk soft - naive d=4 | verdict |")
    rows = [head, "|---|" + "---|" * (len(ABLATION_SETUPS) + 2)]
    for fam in fams:
        diffs = []
        for s in ABLATION_SETUPS:
            n, c = data.rollouts(level, s, f"{fam}.naive"), data.rollouts(level, s, f"{fam}.rtc_exp")
            diffs.append(MISSING if n is None or c is None else paired_solve(n, c).text())
        decision = decide(data, level, fam)
        jerk = decision["evidence"].get("d4", {}).get("jerk")
        jtxt = MISSING if jerk is None else interval_text(jerk)
        rows.append(f"| {fam} | " + " | ".join(diffs) + f" | {jtxt} | {decision['text']} |")
    return ["Soft RTC against naive (McNemar on paired rollouts, raw p), soft RTC's jerk against naive's (paired "
            f"bootstrap 95%; {SMOOTHNESS_LABEL}) and the verdict of the rule:", "", *rows, ""]


def _dose_section(dose: list[dict], level: str, out_dir: Path) -> list[str]:
    """The K dose table (paired soft RTC - naive per K) and its figure."""
    head = ("| K | family | stochasticity | bimodal share | boundary disagreement | "
            + " | ".join(f"naive d={s[1:]} | soft d={s[1:]} | soft - naive d={s[1:]}" for s in RULE_SETUPS) + " |")
    rows = [head, "|---|---|---|---|---|" + "---|" * (3 * len(RULE_SETUPS))]
    for r in dose:
        cells = []
        for s in RULE_SETUPS:
            cells += [MISSING] * 3 if r[s] is None else [f"{r[s][0]:.3f}", f"{r[s][1]:.3f}", r[s][2].text()]
        rows.append(f"| {r['K']} | {r['family']} | {_mod(r['policy'], 'stochasticity')} | "
                    f"{_mod(r['policy'], 'bimodal_share')} | {_mod(r['policy'], 'boundary_disagreement')} | "
                    + " | ".join(cells) + " |")
    slug = figure_slug(level)
    plot_dose(dose, level, out_dir / f"ablation_dose_{slug}.png")
    return ["The K dose: the families with sampled labels, one per number of expert seeds K (their seed "
            "sets nest), with the paired soft RTC - naive difference:", "", *rows, "",
            f"![soft RTC minus naive against K on {level}](ablation_dose_{slug}.png)", ""]


def ablation_section(data: RunData, out_dir: Path) -> list[str]:
    """The ablation part of the page: per level, policies, solve rates, the rule's verdicts, gap and dose."""
    lines = list(INTRO)
    for level in sorted(data.cells["level"].unique()):
        # the families run on this level (runs of several levels may compare different families)
        fams = [f for f in families(data)
                if data.cells[(data.cells.level == level) & data.cells["method"].str.startswith(f + ".")].size]
        lines += [f"### {level}", ""]
        lines += _policies_table(data, level, fams)
        lines += _solve_table(data, level, fams)
        lines += _verdict_table(data, level, fams)
        points = gap_points(data, level, fams)
        if not points.empty:
            slug = figure_slug(level)
            plot_gap(points, level, "d4", out_dir / f"ablation_gap_{slug}.png")
            lines += [f"![soft RTC minus naive at d=4 against policy modality on {level}](ablation_gap_{slug}.png)",
                      "", "Soft RTC minus naive solve rate at d = 4 (paired bootstrap 95% interval) against each "
                      "modality measure the families' sidecars record (95% intervals), one panel per measure.", ""]
        dose = dose_rows(data, level, fams)
        if dose:
            lines += _dose_section(dose, level, out_dir)
    return lines
