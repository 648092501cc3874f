"""The modality ablation of the study (issue #14): how RTC's advantage over naive chunking depends on how
multimodal the cloned policy is.

Input: one run (``bench/scenarios/ablation_modality.yaml``, or any run whose method labels are
``FAMILY.METHOD``): every policy family (a BC checkpoint made with some number of experts and a label
mode) runs naive, soft RTC (``rtc_exp``), hard RTC (``rtc_hard``) and BID-16 (``bid16``) at constant
delays ``d2``, ``d3``, ``d4`` (s = d). Each family's modality and data (experts, label) are read from
what every cell recorded of its checkpoint's sidecar (``cell_config.policy``), so the page needs nothing
but the results file.

**The decision rule, fixed before any ablation cell was run**, is `rtcbench.store.study.paper_ordering`
(its docstring states it), applied to each family's cells; the constant-delay sweep's claims table applies
the same function to plain method names. Every family run is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rtcbench.stats import paired_bootstrap
from rtcbench.store.report import _plt
from rtcbench.store.study import RULE_SETUPS, RunData, interval_text, paired_solve, paper_ordering
from rtcbench.store.style import SETUP_COLORS, save_figure, split_family

ABLATION_SCENARIO = "ablation_modality"
ABLATION_METHODS = ("naive", "rtc_exp", "rtc_hard", "bid16")
ABLATION_SETUPS = ("d2", "d3", "d4")
MODALITY_KEYS = ("spread", "sign_disagreement", "boundary_disagreement")


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
    return paper_ordering(lambda method, setup: data.rollouts(level, setup, f"{family}.{method}"))


def _mod(policy: dict, key: str) -> str:
    m = (policy.get("modality") or {}).get(key)
    if not m:
        return "–"
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def gap_points(data: RunData, level: str, fams: list[str], setup: str = "d4") -> pd.DataFrame:
    """One row per family with a measured spread: spread (and CI) against soft - naive at ``setup`` (and its
    paired bootstrap CI)."""
    rows = []
    for fam in fams:
        policy = family_policy(data, level, fam)
        spread = (policy.get("modality") or {}).get("spread")
        naive, soft = data.rollouts(level, setup, f"{fam}.naive"), data.rollouts(level, setup, f"{fam}.rtc_exp")
        if spread is None or naive is None or soft is None:
            continue
        boot = paired_bootstrap(naive["solved"].to_numpy(float), soft["solved"].to_numpy(float), seed=0)
        rows.append({"family": fam, "spread": spread["value"], "spread_lo": spread["ci95"][0],
                     "spread_hi": spread["ci95"][1], "gap": boot.diff, "gap_lo": boot.low, "gap_hi": boot.high})
    return pd.DataFrame(rows)


def plot_gap(points: pd.DataFrame, level: str, setup: str, out: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.axhline(0.0, color="0.5", lw=1)
    for _, p in points.iterrows():
        ax.errorbar([p["spread"]], [p["gap"]], xerr=[[p["spread"] - p["spread_lo"]], [p["spread_hi"] - p["spread"]]],
                    yerr=[[p["gap"] - p["gap_lo"]], [p["gap_hi"] - p["gap"]]], fmt="o", capsize=3)
        ax.annotate(p["family"], (p["spread"], p["gap"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set(xlabel="policy spread (same-observation / different-observation chunk distance, 95% CI)",
           ylabel=f"soft RTC - naive solve rate at {setup} (paired 95% CI)",
           title=f"{level}: RTC's advantage against policy multimodality")
    ax.grid(alpha=0.3)
    fig.tight_layout()
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
    plt = _plt()
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


def ablation_section(data: RunData, out_dir: Path) -> list[str]:
    lines = ["## Modality ablation: does RTC's advantage grow with policy multimodality?", "",
             "Each policy family is a BC checkpoint of the same level, size and training, made from different "
             "demonstrations (how many expert seeds, mean or sampled labels). Its modality is measured on the "
             "checkpoint (`rtcbench policy modality`, 128 held-out closed-loop observations x 16 chunks, "
             "bootstrap 95% intervals over observations): *spread* = mean distance between chunks sampled at one "
             "observation / between chunks at different observations; *sign* = share of same-observation pairs "
             "whose first actions disagree in sign; *boundary* = mean |B_i - A_(s+i)| between consecutive naive "
             "chunks at d = s = 4, aligned in time.", "",
             "Decision rule, fixed before the runs (rtcbench/store/ablation.py): the paper's ordering holds for a "
             "family when soft RTC beats naive at d = 3 and d = 4 (McNemar p < 0.05 each), soft >= hard RTC at "
             "both, and soft RTC's jerk is below naive's at both (paired bootstrap 95% interval < 0).", ""]
    for level in sorted(data.cells["level"].unique()):
        # the families run on this level (runs of several levels may compare different families)
        fams = [f for f in families(data)
                if data.cells[(data.cells.level == level) & data.cells["method"].str.startswith(f + ".")].size]
        lines += [f"### {level}", ""]
        head = "| family | experts | label | keep | d=0 solve | spread | sign disagreement | boundary disagreement |"
        rows = [head, "|---|---|---|---|---|---|---|---|"]
        for fam in fams:
            pol = family_policy(data, level, fam)
            dat = pol.get("data") or {}
            d0 = pol.get("solve_rate_d0")
            rows.append(f"| {fam} | {dat.get('n_experts', '–')} | {dat.get('label', '–')} | {dat.get('keep', '–')} | "
                        f"{'–' if d0 is None else f'{d0:.3f}'} | " + " | ".join(_mod(pol, k) for k in MODALITY_KEYS)
                        + " |")
        lines += ["Policies:", "", *rows, ""]
        head = "| family | method | " + " | ".join(f"d={s[1:]}" for s in ABLATION_SETUPS) + " |"
        rows = [head, "|---|---|" + "---|" * len(ABLATION_SETUPS)]
        for fam in fams:
            for m in ABLATION_METHODS:
                cells = [data.cell(level, s, f"{fam}.{m}") for s in ABLATION_SETUPS]
                if all(c is None for c in cells):
                    continue
                rows.append(f"| {fam} | {m} | " + " | ".join(
                    "–" if c is None else f"{c['solve_rate']:.3f} [{c['solve_ci_low']:.3f}, {c['solve_ci_high']:.3f}]"
                    for c in cells) + " |")
        lines += ["Solve rate [Wilson 95%] (s = d, 512 paired rollouts per cell unless the run says otherwise):", "",
                  *rows, ""]
        head = ("| family | " + " | ".join(f"soft - naive d={s[1:]}" for s in ABLATION_SETUPS)
                + " | jerk soft - naive d=4 | verdict |")
        rows = [head, "|---|" + "---|" * (len(ABLATION_SETUPS) + 2)]
        for fam in fams:
            diffs = []
            for s in ABLATION_SETUPS:
                n, c = data.rollouts(level, s, f"{fam}.naive"), data.rollouts(level, s, f"{fam}.rtc_exp")
                diffs.append("–" if n is None or c is None else paired_solve(n, c).text())
            decision = decide(data, level, fam)
            jerk = decision["evidence"].get("d4", {}).get("jerk")
            jtxt = "–" if jerk is None else interval_text(jerk)
            rows.append(f"| {fam} | " + " | ".join(diffs) + f" | {jtxt} | {decision['text']} |")
        lines += ["Soft RTC against naive (McNemar on paired rollouts) and the verdict of the rule:", "", *rows, ""]
        points = gap_points(data, level, fams)
        if not points.empty:
            slug = level.replace("/", "_").replace(":", "_")
            plot_gap(points, level, "d4", out_dir / f"ablation_gap_{slug}.png")
            lines += [f"![soft RTC minus naive at d=4 against policy spread on {level}](ablation_gap_{slug}.png)",
                      "", "Soft RTC minus naive solve rate at d = 4 (paired bootstrap 95% interval) against the "
                      "family's spread (95% interval).", ""]
        dose = dose_rows(data, level, fams)
        if dose:
            head = ("| K | family | spread | boundary disagreement | "
                    + " | ".join(f"naive d={s[1:]} | soft d={s[1:]} | soft - naive d={s[1:]}" for s in RULE_SETUPS) + " |")
            rows = [head, "|---|---|---|---|" + "---|" * (3 * len(RULE_SETUPS))]
            for r in dose:
                cells = []
                for s in RULE_SETUPS:
                    cells += ["–"] * 3 if r[s] is None else [f"{r[s][0]:.3f}", f"{r[s][1]:.3f}", r[s][2].text()]
                rows.append(f"| {r['K']} | {r['family']} | {_mod(r['policy'], 'spread')} | "
                            f"{_mod(r['policy'], 'boundary_disagreement')} | " + " | ".join(cells) + " |")
            slug = level.replace("/", "_").replace(":", "_")
            plot_dose(dose, level, out_dir / f"ablation_dose_{slug}.png")
            lines += ["The K dose: the families with sampled labels, one per number of expert seeds K (their seed "
                      "sets nest), with the paired soft RTC - naive difference:", "", *rows, "",
                      f"![soft RTC minus naive against K on {level}](ablation_dose_{slug}.png)", ""]
    return lines
