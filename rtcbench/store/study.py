"""`rtcbench study`: the tail-latency study page, generated from a results file (issue #6).

Inputs are two runs of one DuckDB file, each found by scenario name (the latest complete run) or by id:

- the **sweep** run (``bench/scenarios/fixed_sweep.yaml``): the paper's constant-delay sweep, setups
  ``d0`` .. ``d4`` (s = max(d, 1)), methods ``naive``, ``rtc_exp``, ``rtc_hard``, ``bid16``, ``te``, ``ttrtc``;
- the **tail** run (``bench/scenarios/tail_matrix.yaml``): setups named ``PROFILE.HORIZON.FORECAST``;
- optional **follow-up** runs (``--extra RUN_ID``, any scenario): every cell against ``naive`` of its setup.

plus optional ``rtcbench bench`` JSON lines (engine against the limit). Every number on the page comes
from the queries ``reports/study_cells.sql`` and ``reports/study_rollouts.sql`` (read-only) or from those
JSON lines; nothing is typed in by hand.

Paired tests. Inside a run, rollout b of every cell shares its env seed, and inside a setup every method
shares the delay schedule, so two cells are compared rollout by rollout:

- solve rates: McNemar's test (`rtcbench.stats.mcnemar`), effect = difference of solve rates;
- jerk (``jerk_max_d2``): a paired bootstrap 95% interval of the mean difference;
- a change of a gap between two setups (does tail control change how far method A is ahead of B?):
  a paired bootstrap interval of mean[(A1 - B1) - (A2 - B2)] over rollouts.

A claim is **reproduced** when its direction holds with p < 0.05, **contradicted** when the opposite
direction holds with p < 0.05, and **not significant** otherwise; the rule for each claim is printed
beside its verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from rtcbench.errors import UserError
from rtcbench.stats import mcnemar, paired_bootstrap
from rtcbench.store.report import REPORTS_DIR, _fmt, _md_table, _plt, load_query
from rtcbench.store.style import PAPER_METHODS, method_styles, save_figure

ALPHA = 0.05
SWEEP_SETUPS = ("d0", "d1", "d2", "d3", "d4")
SWEEP_METHODS = PAPER_METHODS  # naive, rtc_exp, rtc_hard, bid16, te, ttrtc
RULE_SETUPS = ("d3", "d4")  # the setups `paper_ordering` judges
TAIL_METHODS = ("naive", "rtc_exp", "rtc_hard", "bid16")
# The reference of Q0 and Q1: the long tail, adaptive horizon, window-max forecast.
TAIL_BASELINE_SETUP = "lt5.adaptive.wmax"
PROFILE_NOTES = {
    "lt5": "long tail: 1-3 steps with 5% spikes of 6",
    "lt05": "tail-controlled: 0.5% spikes",
    "lt5cap4": "long tail under a 4-step cap",
    "lt5hedge2": "long tail, two hedged requests",
    "bursty": "bursty (Gilbert-Elliott, 5-7 step bursts)",
}


# -- data -----------------------------------------------------------------------------------------
@dataclass
class RunData:
    runs: list[pd.Series]  # one or more runs of one scenario (e.g. one per level), cells concatenated
    cells: pd.DataFrame  # one row per cell
    outcomes: dict[str, pd.DataFrame]  # cell_id -> rollouts [rollout, solved, jerk_max_d2] sorted by rollout

    def cell(self, level: str, setup: str, method: str) -> pd.Series | None:
        rows = self.cells[(self.cells.level == level) & (self.cells.setup == setup) & (self.cells.method == method)]
        return None if rows.empty else rows.iloc[0]

    def rollouts(self, level: str, setup: str, method: str) -> pd.DataFrame | None:
        row = self.cell(level, setup, method)
        return None if row is None else self.outcomes.get(row["cell_id"])


def find_runs(conn: duckdb.DuckDBPyConnection, scenario: str, run_ids: list[str], db_path: str,
              flag: str) -> list[pd.Series]:
    """The given runs (each must be complete), else the latest complete run of the scenario."""
    if run_ids:
        out = []
        for run_id in run_ids:
            frame = conn.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
            if frame.empty:
                raise UserError(f"no run {run_id!r} in this file", path=db_path, field=flag)
            if frame.iloc[0]["status"] != "complete":
                raise UserError(f"run {run_id!r} has status {frame.iloc[0]['status']!r}; the study needs complete "
                                "runs (finish it with `rtcbench run --resume`)", path=db_path, field=flag)
            out.append(frame.iloc[0])
        return out
    frame = conn.execute("SELECT * FROM runs WHERE scenario = ? AND status = 'complete' ORDER BY started_at DESC "
                         "LIMIT 1", [scenario]).df()
    if frame.empty:
        raise UserError(f"no complete run of scenario {scenario!r} in this file (run `rtcbench run "
                        f"bench/scenarios/{scenario}.yaml` first, or pass {flag} RUN_ID)", path=db_path, field=flag)
    return [frame.iloc[0]]


def _pairing(cell_config: str | None) -> str:
    """What makes rollouts of two cells pair: their seeds and rollout count (from the stored cell config)."""
    cfg = json.loads(cell_config or "{}")
    return json.dumps([cfg.get("seeds"), cfg.get("rollouts")], sort_keys=True)


def load_runs(conn: duckdb.DuckDBPyConnection, runs: list[pd.Series], reports_dir: Path = REPORTS_DIR) -> RunData:
    """Cells and per-rollout outcomes of one or more runs.

    Two runs may hold the same level only when they hold different cells of it (e.g. the K dose's families,
    run apart from the 2x2 ablation's) and every cell of that level has the same seeds and rollouts, so that
    rollout b of any two of its cells is the same env randomness and the paired tests stay paired."""
    frames, outcomes = [], {}
    for run in runs:
        params = {"run_id": run["run_id"]}
        cells = conn.execute(load_query("study_cells", reports_dir), params).df()
        rollouts = conn.execute(load_query("study_rollouts", reports_dir), params).df()
        got = {cid: frame.reset_index(drop=True) for cid, frame in rollouts.groupby("cell_id", sort=False)}
        for _, cell in cells.iterrows():
            n = len(got.get(cell["cell_id"], ()))
            if n != int(cell["n_rollouts"]) or n == 0:
                raise UserError(f"cell {cell['level']} | {cell['method']} | {cell['setup']} of run {run['run_id']} "
                                f"has {n} stored rollouts for n_rollouts={int(cell['n_rollouts'])}: invalid, not "
                                "usable for paired tests", field="rollouts")
        for frame in frames:  # runs may share a level only as parts of one paired design (see docstring)
            shared = set(frame["level"]) & set(cells["level"])
            if not shared:
                continue
            both = (set(zip(frame["level"], frame["method"], frame["setup"], strict=True))
                    & set(zip(cells["level"], cells["method"], cells["setup"], strict=True)))
            if both:
                cell = sorted(both)[0]
                raise UserError(f"runs {frame['run_id'].iloc[0]} and {run['run_id']} both hold cell "
                                f"{' | '.join(cell)}; pass one run per cell", field="--sweep/--tail")
            pairing = {_pairing(c) for c in (*frame["cell_config"], *cells["cell_config"])
                       if json.loads(c or "{}").get("level") in shared}
            if len(pairing) > 1:
                raise UserError(f"runs {frame['run_id'].iloc[0]} and {run['run_id']} both hold level(s) "
                                f"{sorted(shared)} with different seeds or rollouts, so their rollouts do not "
                                "pair; pass one run per level", field="--sweep/--tail")
        frames.append(cells.assign(run_id=run["run_id"]))
        outcomes |= got
    return RunData(list(runs), pd.concat(frames, ignore_index=True), outcomes)


def check_sweep(data: RunData) -> None:
    """A sweep run must hold, on every level, the setups d0..d4 and naive with at least one other sweep
    method; otherwise its tables would be empty and its claims "not significant" for want of data."""
    _check_shape(data, "--sweep", "a constant-delay sweep (scenario fixed_sweep)", set(SWEEP_SETUPS),
                 SWEEP_METHODS)


def check_tail(data: RunData) -> None:
    """A tail run must hold the reference setup (long tail, adaptive, window max) and naive with at least one
    other tail method on every level."""
    _check_shape(data, "--tail", "a tail matrix (scenario tail_matrix)", {TAIL_BASELINE_SETUP}, TAIL_METHODS)


def _check_shape(data: RunData, flag: str, what: str, setups: set[str], methods: tuple[str, ...]) -> None:
    runs = ", ".join(str(r["run_id"]) for r in data.runs)
    for level in sorted(data.cells["level"].unique()):
        cells = data.cells[data.cells.level == level]
        missing_setups = sorted(setups - set(cells["setup"]))
        have = set(cells["method"])
        problems = []
        if missing_setups:
            problems.append(f"setups {', '.join(missing_setups)}")
        if "naive" not in have:
            problems.append("method naive")
        if not have & set(methods[1:]):
            problems.append(f"any of the methods {', '.join(methods[1:])}")
        if problems:
            raise UserError(f"run {runs} is not {what}: on level {level} it has no {'; no '.join(problems)} (it has "
                            f"setups {', '.join(sorted(set(cells['setup'])))} and methods {', '.join(sorted(have))})",
                            field=flag)


# -- paired statistics ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Paired:
    """Candidate minus baseline on paired rollouts."""

    base_rate: float
    cand_rate: float
    diff: float
    p_value: float
    n: int

    @property
    def verdict(self) -> str:
        return verdict(self.diff, self.p_value)

    def text(self) -> str:
        return f"{self.diff:+.3f} (p={self.p_value:.2g})"


def verdict(diff: float, p_value: float, predicted_sign: int = 1) -> str:
    """reproduced / contradicted / not significant for a predicted direction (+1: diff > 0)."""
    if p_value < ALPHA and diff * predicted_sign > 0:
        return "reproduced"
    if p_value < ALPHA and diff * predicted_sign < 0:
        return "contradicted"
    return "not significant"


def paired_solve(base: pd.DataFrame, cand: pd.DataFrame) -> Paired:
    """McNemar on the per-rollout solves of two cells of one run."""
    b, c = base["solved"].to_numpy(bool), cand["solved"].to_numpy(bool)
    res = mcnemar(b, c)
    return Paired(float(b.mean()), float(c.mean()), float(c.mean() - b.mean()), res.p_value, res.n_pairs)


def interval_text(boot) -> str:
    """A paired bootstrap's mean difference and 95% interval, 3 significant digits: ``+d [+lo, +hi]``."""
    return f"{boot.diff:+.3g} [{boot.low:+.3g}, {boot.high:+.3g}]"


def paired_jerk(base: pd.DataFrame, cand: pd.DataFrame) -> str:
    boot = paired_bootstrap(base["jerk_max_d2"].to_numpy(float), cand["jerk_max_d2"].to_numpy(float), seed=0)
    if boot.n_pairs == 0:
        return "–"
    star = "*" if boot.significant else ""
    return interval_text(boot) + star


def gap_change(a1: pd.DataFrame, b1: pd.DataFrame, a2: pd.DataFrame, b2: pd.DataFrame) -> str:
    """Bootstrap 95% interval of mean[(a1 - b1) - (a2 - b2)] over paired rollouts (solves as 0/1)."""
    a1_, b1_, a2_, b2_ = (x["solved"].to_numpy(float) for x in (a1, b1, a2, b2))
    boot = paired_bootstrap(a2_ - b2_, a1_ - b1_, seed=0)  # mean(candidate - baseline) = mean[(a1-b1) - (a2-b2)]
    star = "*" if boot.significant else ""
    return f"{boot.diff:+.3f} [{boot.low:+.3f}, {boot.high:+.3f}]{star}"


# -- formatting -----------------------------------------------------------------------------------
def _rate_ci(row: pd.Series | None) -> str:
    if row is None:
        return "–"
    return f"{row['solve_rate']:.3f} [{row['solve_ci_low']:.3f}, {row['solve_ci_high']:.3f}]"


def _provenance(label: str, data: RunData) -> list[str]:
    out = []
    for run in data.runs:
        cells = data.cells[data.cells.run_id == run["run_id"]]
        n = sorted({int(v) for v in cells["n_rollouts"]})
        out.append(
            f"- **{label}**: run `{run['run_id']}` of scenario `{run['scenario']}` v{run['scenario_version']} "
            f"(config `{str(run['config_hash'])[:12]}`), levels {', '.join(sorted(set(cells['level'])))}, "
            f"{len(cells)} cells x {', '.join(map(str, n))} rollouts, commit `{str(run['git_commit'])[:10]}`"
            f"{' (dirty)' if pd.notna(run['git_dirty']) and bool(run['git_dirty']) else ''}, "
            f"{run['jax_backend']} ({run['device_kind']}), "
            f"jax {run['jax_version']}, wall {_fmt(float(run['wall_s']) / 60)} min of which "
            f"{_fmt(float(run['compile_s']) / 60)} min compiling; cell times sum to "
            f"{_fmt(float(cells['wall_s'].sum()) / 60)} min")
    return out


def _methods_present(data: RunData, wanted: tuple[str, ...]) -> list[str]:
    have = set(data.cells["method"])
    return [m for m in wanted if m in have]


# -- plots ----------------------------------------------------------------------------------------
def plot_sweep(data: RunData, level: str, methods: list[str], out: Path) -> None:
    plt = _plt()
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
        axj.plot(xs, [r["jerk_max_d2"] for r in kept], marker="o", label=m, color=styles[m].color)
    ax.set(xlabel="delay d (steps); s = max(d, 1)", ylabel="solve rate (Wilson 95%)", title=f"{level}: solve rate")
    axj.set(xlabel="delay d (steps)", ylabel="mean per-rollout max ||a_t - 2a_(t-1) + a_(t-2)||",
            title="jerk (max second difference)")
    ax.set_xticks(ds)
    axj.set_xticks(ds)
    fig.legend(*ax.get_legend_handles_labels(), title="method", loc="outside lower center", ncols=len(methods),
               fontsize=8, title_fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    axj.grid(alpha=0.3)
    save_figure(fig, out)


def plot_tail(data: RunData, level: str, setups: list[str], methods: list[str], out: Path, title: str) -> None:
    plt = _plt()
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


# -- part 1: the paper's constant-delay ordering --------------------------------------------------
def sweep_section(data: RunData, out_dir: Path) -> list[str]:
    lines = ["## 1. Sanity check: the paper's constant-delay sweep", ""]
    methods = _methods_present(data, SWEEP_METHODS)
    for level in sorted(data.cells["level"].unique()):
        slug = level.replace("/", "_").replace(":", "_")
        plot_sweep(data, level, methods, out_dir / f"sweep_{slug}.png")
        lines += [f"### {level}", "", f"![solve rate and jerk against d on {level}](sweep_{slug}.png)", ""]
        head = "| method | " + " | ".join(f"d={s[1:]}" for s in SWEEP_SETUPS) + " | d4 - d0 |"
        rows = [head, "|" + "---|" * (len(SWEEP_SETUPS) + 2)]
        for m in methods:
            cells = [data.cell(level, s, m) for s in SWEEP_SETUPS]
            drop = (f"{cells[-1]['solve_rate'] - cells[0]['solve_rate']:+.3f}"
                    if cells[0] is not None and cells[-1] is not None else "–")
            rows.append(f"| {m} | " + " | ".join(_rate_ci(c) for c in cells) + f" | {drop} |")
        lines += ["Solve rate [Wilson 95%] of the first episode:", "", *rows, ""]
        jrows = ["| method | " + " | ".join(f"d={s[1:]}" for s in SWEEP_SETUPS) + " |",
                 "|" + "---|" * (len(SWEEP_SETUPS) + 1)]
        for m in methods:
            jrows.append(f"| {m} | " + " | ".join(
                _fmt(c["jerk_max_d2"]) if c is not None else "–"
                for c in (data.cell(level, s, m) for s in SWEEP_SETUPS)) + " |")
        lines += ["Jerk (mean over rollouts of the per-rollout max second difference of the executed actions):",
                  "", *jrows, ""]
        lines += _sweep_claims(data, level, methods)
    return lines


def _pair(data: RunData, level: str, setup: str, base: str, cand: str) -> Paired | None:
    b, c = data.rollouts(level, setup, base), data.rollouts(level, setup, cand)
    return None if b is None or c is None else paired_solve(b, c)


def _sweep_claims(data: RunData, level: str, methods: list[str]) -> list[str]:
    lines = ["Claims of Black et al. (2025), tested on this level (McNemar on paired rollouts, alpha 0.05):", ""]
    rows = ["| claim | rule | evidence | verdict |", "|---|---|---|---|"]
    # C1: soft RTC is the most robust as d grows.
    others = [m for m in ("naive", "rtc_hard", "bid16", "te") if m in methods]
    if "rtc_exp" in methods and others:
        pairs = {m: _pair(data, level, "d4", m, "rtc_exp") for m in others}
        ev = ", ".join(f"vs {m} {p.text()}" for m, p in pairs.items() if p is not None)
        beaten = [m for m, p in pairs.items() if p is not None and p.verdict == "contradicted"]
        vs_naive = pairs.get("naive")
        if beaten:
            v = "contradicted (" + ", ".join(beaten) + " better)"
        elif vs_naive is not None and vs_naive.verdict == "reproduced":
            v = "reproduced"
        else:
            v = "not significant"
        rows.append(f"| soft RTC (exp) is the most robust as d grows | at d=4: rtc_exp - m > 0 for every "
                    f"inference-time m, significantly vs naive, and no m significantly better | {ev} | {v} |")
    # C2: hard masking trails soft masking, mostly at small d.
    if {"rtc_exp", "rtc_hard"} <= set(methods):
        pairs = {s: _pair(data, level, s, "rtc_hard", "rtc_exp") for s in ("d1", "d2", "d3", "d4")}
        ev = ", ".join(f"{s}: {p.text()}" for s, p in pairs.items() if p is not None)
        small = [p for s, p in pairs.items() if s in ("d1", "d2") and p is not None]
        large = [p for s, p in pairs.items() if s in ("d3", "d4") and p is not None]
        if any(p.verdict == "contradicted" for p in pairs.values() if p is not None):
            v = "contradicted"
        elif any(p.verdict == "reproduced" for p in small):
            v = ("reproduced" if max(p.diff for p in small) >= max((p.diff for p in large), default=-1.0)
                 else "partly (soft ahead, but more at large d)")
        elif any(p.verdict == "reproduced" for p in large):
            v = "partly (soft ahead only at large d)"
        else:
            v = "not significant"
        rows.append(f"| hard masking trails soft, mostly at small d | rtc_exp - rtc_hard > 0 significantly at d=1 or "
                    f"2, with the largest gap at d <= 2 | {ev} | {v} |")
    # C3: temporal ensembling is poor even at d = 0.
    if {"te", "naive"} <= set(methods):
        p = _pair(data, level, "d0", "te", "naive")
        if p is not None:
            rows.append(f"| temporal ensembling is poor even at d=0 | naive - te > 0 significantly at d=0 | "
                        f"naive - te {p.text()} | {p.verdict} |")
    # C4: training-time RTC beats inference-time RTC at d >= 2.
    if {"ttrtc", "rtc_exp"} <= set(methods):
        pairs = {s: _pair(data, level, s, "rtc_exp", "ttrtc") for s in ("d2", "d3", "d4")}
        ev = ", ".join(f"{s}: {p.text()}" for s, p in pairs.items() if p is not None)
        verdicts = [p.verdict for p in pairs.values() if p is not None]
        v = ("reproduced" if verdicts and all(x == "reproduced" for x in verdicts)
             else "contradicted" if "contradicted" in verdicts
             else "partly" if "reproduced" in verdicts else "not significant")
        rows.append(f"| training-time RTC beats inference-time RTC at d >= 2 | ttrtc - rtc_exp > 0 significantly "
                    f"at each of d=2, 3, 4 | {ev} | {v} |")
    # C5: issue #14's pre-registered rule for the ordering as a whole (also the modality ablation's rule).
    if {"naive", "rtc_exp", "rtc_hard"} <= set(methods):
        decision = paper_ordering(lambda method, setup: data.rollouts(level, setup, method))
        ev = ", ".join(f"{s}: soft - naive {e['soft_minus_naive'].text()}, soft - hard {e['soft_minus_hard']:+.3f}, "
                       f"jerk soft - naive {interval_text(e['jerk'])}" for s, e in decision["evidence"].items())
        rows.append("| the paper's ordering as a whole (issue #14, `paper_ordering`) | at d=3 and d=4: rtc_exp - naive > 0 "
                    "significantly, rtc_exp >= rtc_hard, and rtc_exp's jerk below naive's (paired bootstrap 95% "
                    f"below 0) | {ev} | {decision['text']} |")
    return lines + rows + [""]


def paper_ordering(rollouts: Callable[[str, str], pd.DataFrame | None]) -> dict:
    """Issue #14's decision rule for "the paper's ordering holds", fixed before any cell it judges was run.

    ``rollouts(method, setup)`` gives one cell's per-rollout frame (None if the run lacks it); methods are
    ``naive``, ``rtc_exp`` (soft RTC) and ``rtc_hard``, setups ``d3`` and ``d4`` (s = d). The ordering holds
    when all of:

    1. soft RTC solves more than naive at d = 3 and at d = 4 (McNemar on paired rollouts, p < 0.05 each);
    2. soft RTC's solve rate is >= hard RTC's at d = 3 and at d = 4 (point estimates);
    3. soft RTC's jerk (per-rollout max second difference of the executed actions) is lower than naive's at
       d = 3 and at d = 4: the paired bootstrap 95% interval of mean(soft - naive) lies below zero.

    Returns {verdict: "reproduced" | "not reproduced" | "incomplete", failed: [why, ...], evidence: {setup:
    {soft_minus_naive, soft_minus_hard, jerk}}, text: the verdict followed by its failing parts in brackets,
    as the pages print it}.
    """
    failed, evidence = [], {}
    for setup in RULE_SETUPS:
        naive, soft, hard = rollouts("naive", setup), rollouts("rtc_exp", setup), rollouts("rtc_hard", setup)
        if naive is None or soft is None or hard is None:
            failed = [f"{setup}: missing cells"]
            return {"verdict": "incomplete", "failed": failed, "evidence": evidence,
                    "text": f"incomplete ({failed[0]})"}
        vs_naive = paired_solve(naive, soft)
        jerk = paired_bootstrap(naive["jerk_max_d2"].to_numpy(float), soft["jerk_max_d2"].to_numpy(float), seed=0)
        soft_rate, hard_rate = float(soft["solved"].mean()), float(hard["solved"].mean())
        evidence[setup] = {"soft_minus_naive": vs_naive, "soft_minus_hard": soft_rate - hard_rate, "jerk": jerk}
        if not (vs_naive.diff > 0 and vs_naive.p_value < ALPHA):
            failed.append(f"{setup}: soft - naive {vs_naive.text()}")
        if soft_rate < hard_rate:
            failed.append(f"{setup}: soft < hard ({soft_rate - hard_rate:+.3f})")
        if not (jerk.n_pairs > 0 and jerk.high < 0):
            failed.append(f"{setup}: jerk soft - naive {interval_text(jerk)} not < 0")
    if not failed:
        return {"verdict": "reproduced", "failed": failed, "evidence": evidence, "text": "reproduced"}
    return {"verdict": "not reproduced", "failed": failed, "evidence": evidence,
            "text": "not reproduced (" + "; ".join(failed) + ")"}


# -- part 2: the tail matrix ----------------------------------------------------------------------
def _split(setup: str) -> tuple[str, str, str]:
    parts = setup.split(".")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (setup, "", "")


def tail_section(data: RunData, out_dir: Path) -> list[str]:
    lines = ["## 2. The tail matrix", ""]
    methods = _methods_present(data, TAIL_METHODS)
    for level in sorted(data.cells["level"].unique()):
        slug = level.replace("/", "_").replace(":", "_")
        setups = sorted(data.cells[data.cells.level == level]["setup"].unique())
        profiles = [p for p in PROFILE_NOTES if any(_split(s)[0] == p for s in setups)]
        profiles += sorted({_split(s)[0] for s in setups} - set(profiles))
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
        frame["solve"] = frame.apply(_rate_ci, axis=1)
        lines += ["<details><summary>Every cell of the tail matrix</summary>", "",
                  _md_table(frame, [("setup", "setup"), ("method", "method"), ("solve", "solve [95% CI]"),
                                    ("d_p95", "d p95"), ("d_p99", "d p99"), ("violation_rate", "violation"),
                                    ("stall_frac", "stall"), ("forecast_miss_rate", "forecast miss"),
                                    ("over_forecast_rate", "over-forecast"), ("jerk_max_d2", "jerk max d2"),
                                    ("nfe_per_inference", "NFE / inference"), ("vjp_per_inference", "VJP / inference"),
                                    ("nfe_per_env_step", "NFE / env step"), ("mean_exec_horizon", "mean s")]),
                  "", "</details>", ""]
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
                parts += ["–", "–"]
                continue
            parts += [_rate_ci(data.cell(level, setup, m)), "–" if p == "lt5" else paired_solve(base, cand).text()]
        rows.append("| " + " | ".join(parts) + " |")
    return lines + rows + [""]


def _tail_q1(data: RunData, level: str, profiles: list[str], methods: list[str]) -> list[str]:
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
        parts = [p, _rate_ci(data.cell(level, setup, "naive"))]
        for m in others:
            cand = data.rollouts(level, setup, m)
            if cand is None:
                parts += ["–", "–", "–"]
                continue
            gap = paired_solve(naive, cand)
            change = "–"
            if p != "lt5" and data.rollouts(level, base_setup, m) is not None:
                change = gap_change(cand, naive, data.rollouts(level, base_setup, m),
                                    data.rollouts(level, base_setup, "naive"))
            parts += [_rate_ci(data.cell(level, setup, m)), gap.text(), change]
        rows.append("| " + " | ".join(parts) + " |")
    return lines + rows + [""]


def _tail_q2(data: RunData, level: str, profiles: list[str], methods: list[str]) -> list[str]:
    lines = ["**Q2. Which forecaster is worth its conservatism?** Adaptive horizon. Each forecast against the "
             "oracle (the true delay) on the same rollouts: solve-rate difference (McNemar p) and jerk difference "
             "(bootstrap 95%, * = excludes 0); miss = P(d > dhat), over = P(d < dhat).", ""]
    rows = ["| profile | method | oracle | wmax - oracle | wmax jerk - oracle | wmax miss / over | wq95 - oracle | "
            "wq95 jerk - oracle | wq95 miss / over | wq95 - wmax |", "|" + "---|" * 10]
    for p in profiles:
        for m in methods:
            if m == "naive":
                continue
            cells = {f: data.cell(level, f"{p}.adaptive.{f}", m) for f in ("oracle", "wmax", "wq95")}
            outs = {f: data.rollouts(level, f"{p}.adaptive.{f}", m) for f in cells}
            if outs["oracle"] is None:
                continue
            parts = [p, m, _rate_ci(cells["oracle"])]
            for f in ("wmax", "wq95"):
                if outs[f] is None:
                    parts += ["–", "–", "–"]
                    continue
                parts += [paired_solve(outs["oracle"], outs[f]).text(), paired_jerk(outs["oracle"], outs[f]),
                          f"{cells[f]['forecast_miss_rate']:.3f} / {cells[f]['over_forecast_rate']:.3f}"]
            parts.append(paired_solve(outs["wmax"], outs["wq95"]).text()
                         if outs["wmax"] is not None and outs["wq95"] is not None else "–")
            rows.append("| " + " | ".join(parts) + " |")
    naive_check = []
    for p in profiles:
        outs = [data.rollouts(level, f"{p}.adaptive.{f}", "naive") for f in ("wmax", "wq95", "oracle")]
        if all(o is not None for o in outs):
            same = all(np.array_equal(outs[0]["solved"].to_numpy(bool), o["solved"].to_numpy(bool))
                       and np.array_equal(outs[0]["jerk_max_d2"].to_numpy(float), o["jerk_max_d2"].to_numpy(float),
                                          equal_nan=True) for o in outs[1:])
            naive_check.append(f"`{p}` {'identical' if same else '**DIFFERENT**'}")
    if naive_check:
        rows += ["", "Check: `naive` uses no prefix, so its three forecast cells of a profile must agree rollout by "
                 "rollout: " + ", ".join(naive_check) + "."]
    return lines + rows + [""]


def _tail_q3(data: RunData, level: str, profiles: list[str], methods: list[str]) -> list[str]:
    pairs = [p for p in profiles if data.cell(level, f"{p}.clock.wmax", methods[0]) is not None]
    if not pairs:
        return []
    lines = ["**Q3. Does the adaptive horizon pay off under tails?** Window-max forecast; adaptive (start as "
             "soon as the last chunk has landed and s >= 3) against a fixed 3-step clock (start only on a tick). "
             "Profiles whose delays are all <= 3 or multiples of 3 give the two the same timeline and are not run "
             "with the clock.", ""]
    rows = ["| profile | method | clock | adaptive | adaptive - clock | jerk adaptive - clock | stall clock / adaptive "
            "| mean s clock / adaptive |", "|" + "---|" * 8]
    for p in pairs:
        for m in methods:
            ca, cc = data.cell(level, f"{p}.adaptive.wmax", m), data.cell(level, f"{p}.clock.wmax", m)
            oa, oc = data.rollouts(level, f"{p}.adaptive.wmax", m), data.rollouts(level, f"{p}.clock.wmax", m)
            if ca is None or cc is None:
                continue
            rows.append(f"| {p} | {m} | {_rate_ci(cc)} | {_rate_ci(ca)} | {paired_solve(oc, oa).text()} | "
                        f"{paired_jerk(oc, oa)} | {cc['stall_frac']:.3f} / {ca['stall_frac']:.3f} | "
                        f"{cc['mean_exec_horizon']:.2f} / {ca['mean_exec_horizon']:.2f} |")
    return lines + rows + [""]


# -- part 4: follow-up runs -----------------------------------------------------------------------
def extra_section(extras: list[RunData]) -> list[str]:
    """Any other complete run: its cells, each against the run's `naive` cell of the same setup (McNemar
    for solves, paired bootstrap for jerk). Inside a run every method of a setup shares the schedule and
    env seeds, so these are paired comparisons."""
    if not extras:
        return []
    lines = ["## 4. Follow-up runs", "",
             "Runs added to the study with `--extra RUN_ID`; each method against `naive` of the same setup and run "
             "(McNemar p; jerk: paired bootstrap 95%, * = excludes 0).", ""]
    for data in extras:
        run = data.runs[0]
        lines += [f"### {run['scenario']} (run `{run['run_id']}`)", ""]
        rows = ["| level | setup | method | solve [95% CI] | - naive | jerk max d2 | jerk - naive | d p95 / p99 | "
                "forecast miss / over | violation |", "|" + "---|" * 10]
        for _, cell in data.cells.iterrows():
            level, setup, method = cell["level"], cell["setup"], cell["method"]
            naive = data.rollouts(level, setup, "naive")
            mine = data.rollouts(level, setup, method)
            versus = jerk = "–"
            if naive is not None and method != "naive":
                versus, jerk = paired_solve(naive, mine).text(), paired_jerk(naive, mine)
            rows.append(f"| {level} | {setup} | {method} | {_rate_ci(cell)} | {versus} | {_fmt(cell['jerk_max_d2'])} | "
                        f"{jerk} | {_fmt(cell['d_p95'])} / {_fmt(cell['d_p99'])} | "
                        f"{cell['forecast_miss_rate']:.3f} / {cell['over_forecast_rate']:.3f} | "
                        f"{cell['violation_rate']:.3f} |")
        lines += [*rows, ""]
    return lines


# -- part 3: cost ---------------------------------------------------------------------------------
def cost_section(runs: list[RunData], bench_lines: list[dict]) -> list[str]:
    lines = ["## 3. Cost and scale", ""]
    rows = []
    for data in runs:
        c = data.cells
        for m, g in c.groupby("method", sort=False):
            rows.append({"run": data.runs[0]["scenario"], "method": m, "cells": len(g),
                         "rollouts": int(g["n_rollouts"].iloc[0]),
                         "median wall s / cell": float(g["wall_s"].median()),
                         "median run s / cell": float(g["run_s"].median()),
                         "compile s": float(g["compile_s"].max()),
                         "median env-steps/s": float(g["env_steps_per_s"].median()),
                         "NFE / inference": float(g["nfe_per_inference"].median()),
                         "VJP / inference": float(g["vjp_per_inference"].median()),
                         "median ms / batched inference": float(g["inference_ms"].median()),
                         "device": ", ".join(sorted({str(r["device_kind"]) for r in data.runs}))})
    if rows:
        frame = pd.DataFrame(rows)
        lines += ["Per run and method (env-steps/s counts every simulated step of every rollout; a cell's wall "
                  "time is its compile plus its run, and only the first cell of a method compiles):", "",
                  _md_table(frame, [(k, k) for k in frame.columns]), ""]
    if bench_lines:
        frame = pd.DataFrame(bench_lines)
        cols = [c for c in ("source", "level", "weights", "preset", "method", "B", "T", "engine_steps_per_s",
                            "physics_only_steps_per_s", "limit_steps_per_s", "ratio", "inference_ms", "compile_s",
                            "device") if c in frame.columns]
        lines += ["Engine against the limit, from `rtcbench bench` (physics alone plus the bare batched policy calls "
                  "the engine made, timed interleaved in the same process; ratio = engine / limit):", "",
                  _md_table(frame, [(c, c) for c in cols]), ""]
    return lines


# -- the page -------------------------------------------------------------------------------------
def read_bench_lines(paths: list[Path]) -> list[dict]:
    out = []
    for path in paths:
        if not path.is_file():
            raise UserError("bench file does not exist", path=str(path), field="--bench")
        for i, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"line {i + 1} is not JSON ({exc.msg})", path=str(path), field="--bench") from None
            if not isinstance(row, dict) or "engine_steps_per_s" not in row:
                raise UserError(f"line {i + 1} is not a `rtcbench bench` record", path=str(path), field="--bench")
            out.append({"source": path.name, **row})
    return out


def write_study(conn: duckdb.DuckDBPyConnection, out_dir: Path, *, sweep: RunData | None, tail: RunData | None,
                bench_lines: list[dict], command: str, extras: list[RunData] | None = None,
                ablation: RunData | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Study: real-time chunking under long-tailed inference delay",
        "",
        f"Generated by `{command}` from the results file; do not edit by hand (the discussion of these numbers is "
        "in [DISCUSSION.md](DISCUSSION.md)). Every table and plot below is computed from the runs listed here.",
        "",
        *[line for label, d in (("sweep", sweep), ("tail", tail), ("ablation", ablation),
                                *(("follow-up", e) for e in extras or []))
          if d is not None for line in _provenance(label, d)],
        "",
        "When a run was killed and resumed, its wall time counts only the calls that finished (a killed call "
        "records none); each cell's compile and run seconds are always its own.",
        "",
        "Method: every cell is one level x one method x one delay setup; inside a run all cells share env seeds "
        "(initial state and the 0.1-std action noise) and, inside a setup, the delay schedule, so methods are "
        "compared rollout by rollout: McNemar's test for solve rates, a paired bootstrap for jerk. A verdict is "
        f"*reproduced* when the predicted direction holds with p < {ALPHA}, *contradicted* when the opposite "
        "does, else *not significant*.",
        "",
    ]
    if sweep is not None:
        lines += sweep_section(sweep, out_dir)
    if tail is not None:
        lines += tail_section(tail, out_dir)
    if ablation is not None:
        from rtcbench.store.ablation import ablation_section

        lines += ablation_section(ablation, out_dir)
    lines += cost_section([d for d in (sweep, tail, ablation, *(extras or [])) if d is not None], bench_lines)
    lines += extra_section(list(extras or []))
    page = out_dir / "README.md"
    page.write_text("\n".join(lines).rstrip() + "\n")
    return page
