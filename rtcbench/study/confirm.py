"""The confirmatory tail study: the hypotheses of ``docs/study/preregistration_tail.md`` (H0, S1-S9) judged
on the runs of ``bench/scenarios/tail_confirm_multiexpert.yaml``, exactly as registered.

Each hypothesis is one or more **rows**; a row compares two cells of one level (or, for a gap change, four),
rollout by rollout (rollout b of every cell of the run shares its env seed). A row is one of three tests:

- ``solve``: McNemar on the paired solves (`rtcbench.paired.paired_solve`): effect = candidate - baseline;
- ``jerk``: the per-rollout difference of `rtcbench.paired.SMOOTHNESS`, candidate - baseline;
- ``gap``: the change of a gap, per rollout ``(a1 - b1) - (a2 - b2)`` of solves as 0/1.

For ``jerk`` and ``gap`` the page shows the paired bootstrap 95% interval the pre-registration names
(`rtcbench.stats.paired_bootstrap`, 4,000 resamples, seed 0) and takes the row's p from a one-sample t-test of
the same per-rollout differences (scipy), because Holm's correction needs a p-value for every row of the family
(addendum of 2026-12-06 in the pre-registration).

Verdicts, as registered: a **directional** row (``kind="predict"``) is *reproduced* when its predicted sign
holds with p < alpha, *contradicted* when the opposite does, else *not significant*; an **at-least-as-much**
row (``kind="not_worse"``) *holds* unless it is contradicted (the predicted direction's opposite with
p < alpha). Which p: H0 (one row per level) uses its raw p at alpha 0.05, the one pre-registered headline test;
every S row uses its Holm-adjusted p over the S rows of its level that were run (`rtcbench.study.rules.holm`).
A row whose cells are not in the runs is *not run* and leaves the family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rtcbench.errors import UserError
from rtcbench.paired import ALPHA, SMOOTHNESS, SMOOTHNESS_LABEL, interval_text, paired_solve
from rtcbench.stats import paired_bootstrap
from rtcbench.study.rules import CORRECTION, holm
from rtcbench.study.runs import RunData, figure_slug, methods_present, seed_role
from rtcbench.study.tail import EVERY_CELL_COLUMNS, plot_tail
from rtcbench.tables import md_table, p_value, solve_ci

CONFIRM_SCENARIO = "tail_confirm_multiexpert"
PREREGISTRATION = "../preregistration_tail.md"  # from docs/study/tail_confirm/
Cell = tuple[str, str]  # (setup, method)


@dataclass(frozen=True)
class Row:
    """One registered comparison: candidate against baseline (``gap``: (a1 - b1) - (a2 - b2))."""

    hypothesis: str  # H0, S1, ...
    label: str  # what the row compares, as the page prints it
    test: str  # solve | jerk | gap
    sign: int  # the predicted sign of the effect
    kind: str  # predict | not_worse
    cells: tuple[Cell, ...]  # solve/jerk: (baseline, candidate); gap: (a1, b1, a2, b2)


def check_confirm(data: RunData) -> None:
    """The confirmatory section reads only runs of the registered scenario on its held-out seeds, so that no
    exploratory run is judged as a confirmation."""
    for run in data.runs:
        if run["scenario"] != CONFIRM_SCENARIO:
            raise UserError(f"run {run['run_id']} is of scenario {run['scenario']!r}, not the registered "
                            f"{CONFIRM_SCENARIO!r}", field="--confirm")
    role = seed_role(data.cells)
    if not role.startswith("held-out"):
        raise UserError(f"runs {', '.join(str(r['run_id']) for r in data.runs)} used {role}: the confirmatory "
                        "section needs the registered held-out seeds", field="--confirm")


def _solve(h: str, label: str, base: Cell, cand: Cell, sign: int = 1, kind: str = "predict") -> Row:
    return Row(h, label, "solve", sign, kind, (base, cand))


def _lt5(method: str, forecast: str = "oracle") -> Cell:
    return (f"lt5.adaptive.{forecast}", method)


def registered_rows() -> list[Row]:
    """Every row of every hypothesis, in the pre-registration's order (the same for each level)."""
    rows = [_solve("H0", "lt5, oracle: rtc_exp - naive", _lt5("naive"), _lt5("rtc_exp"))]
    rows += [_solve("S1", f"lt5, rtc_exp: {f} - oracle", _lt5("rtc_exp"), _lt5("rtc_exp", f), sign=-1)
             for f in ("wmax", "wq95")]
    rows.append(Row("S2", "lt5: (rtc_exp - naive) with wmax minus with oracle", "gap", -1, "predict",
                    (_lt5("rtc_exp", "wmax"), _lt5("naive", "wmax"), _lt5("rtc_exp"), _lt5("naive"))))
    rows += [_solve("S3", f"wmax, {m}: {p} - lt5", _lt5(m, "wmax"), (f"{p}.adaptive.wmax", m))
             for m in ("naive", "rtc_exp") for p in ("lt5cap4", "lt5drop", "lt5hedge2")]
    rows.append(Row("S4", "wmax: (rtc_exp - naive) under lt5hedge2 minus under lt5", "gap", 1, "predict",
                    (("lt5hedge2.adaptive.wmax", "rtc_exp"), ("lt5hedge2.adaptive.wmax", "naive"),
                     _lt5("rtc_exp", "wmax"), _lt5("naive", "wmax"))))
    rows += [_solve("S5", f"{p}, wmax, rtc_exp: adaptive - clock", (f"{p}.clock.wmax", "rtc_exp"),
                    (f"{p}.adaptive.wmax", "rtc_exp")) for p in ("lt5cap4", "bursty")]
    rows.append(Row("S6", f"lt5, oracle: {SMOOTHNESS} rtc_exp - naive", "jerk", -1, "predict",
                    (_lt5("naive"), _lt5("rtc_exp"))))
    rows.append(_solve("S7", "lt5, oracle: ttrtc - rtc_exp (at least as much)", _lt5("rtc_exp"), _lt5("ttrtc"),
                       kind="not_worse"))
    rows.append(_solve("S7", "lt5, wmax: ttrtc - rtc_exp", _lt5("rtc_exp", "wmax"), _lt5("ttrtc", "wmax"), sign=-1))
    rows += [_solve("S8", f"{p}, oracle: rtc_exp - rtc_hard (at least as much)", (f"{p}.adaptive.oracle", "rtc_hard"),
                    (f"{p}.adaptive.oracle", "rtc_exp"), kind="not_worse") for p in ("lt5", "lt05")]
    rows += [_solve("S9", f"{p}, wmax: rtc_exp - naive (at least as much)", (f"{p}.adaptive.wmax", "naive"),
                    (f"{p}.adaptive.wmax", "rtc_exp"), kind="not_worse") for p in ("bursty", "trace")]
    return rows


@dataclass(frozen=True)
class Judged:
    """A row's evidence on one level: effect, raw p, the text of its interval or rates."""

    row: Row
    effect: float
    p_raw: float
    evidence: str


def _mean_diff_test(diffs: np.ndarray) -> float:
    """Two-sided p of a one-sample t-test that the mean per-rollout difference is 0 (1.0 when all are equal)."""
    from scipy import stats

    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < 2 or np.all(diffs == diffs[0]):
        return 1.0 if diffs.size == 0 or diffs[0] == 0 else 0.0
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def judge_row(data: RunData, level: str, row: Row) -> Judged | None:
    """The row's test on one level; None when a cell it needs is not in the runs."""
    frames = [data.rollouts(level, setup, method) for setup, method in row.cells]
    if any(f is None for f in frames):
        return None
    if row.test == "solve":
        base, cand = frames
        res = paired_solve(base, cand)
        cells = [data.cell(level, *c) for c in row.cells]
        return Judged(row, res.diff, res.p_value, f"{solve_ci(cells[1])} vs {solve_ci(cells[0])}")
    if row.test == "jerk":
        base, cand = (f[SMOOTHNESS].to_numpy(float) for f in frames)
        boot = paired_bootstrap(base, cand, seed=0)
        return Judged(row, boot.diff, _mean_diff_test(cand - base), interval_text(boot))
    a1, b1, a2, b2 = (f["solved"].to_numpy(float) for f in frames)
    boot = paired_bootstrap(a2 - b2, a1 - b1, seed=0)  # mean(candidate - baseline) = mean[(a1-b1) - (a2-b2)]
    return Judged(row, boot.diff, _mean_diff_test((a1 - b1) - (a2 - b2)), interval_text(boot))


def row_verdict(judged: Judged, p: float) -> str:
    """The registered verdict of a row at its p (raw for H0, Holm-adjusted for S rows)."""
    toward = judged.effect * judged.row.sign > 0
    against = judged.effect * judged.row.sign < 0
    if judged.row.kind == "not_worse":
        return "contradicted" if (p < ALPHA and against) else "holds (not contradicted)"
    if p < ALPHA and toward:
        return "reproduced"
    if p < ALPHA and against:
        return "contradicted"
    return "not significant"


@dataclass(frozen=True)
class Verdict:
    judged: Judged
    p_used: float  # raw (H0) or Holm-adjusted (S rows)
    verdict: str


def judge_level(data: RunData, level: str) -> tuple[list[Verdict], list[Row]]:
    """(verdicts of the rows that were run, rows not run) on one level, Holm over the S rows run."""
    judged, missing = [], []
    for row in registered_rows():
        j = judge_row(data, level, row)
        (missing.append(row) if j is None else judged.append(j))
    secondary = [j for j in judged if j.row.hypothesis != "H0"]
    adjusted = dict(zip(map(id, secondary), holm([j.p_raw for j in secondary]), strict=True))
    out = []
    for j in judged:
        p = j.p_raw if j.row.hypothesis == "H0" else adjusted[id(j)]
        out.append(Verdict(j, p, row_verdict(j, p)))
    return out, missing


def h4_decomposition(verdicts: list[Verdict]) -> str | None:
    """The registered decision on the exploratory "soft RTC loses to naive under the long tail": over-forecasting
    (H0 and S2 reproduced), the short-delay deficit (H0 not reproduced), or neither (H0 yes, S2 no)."""
    by = {v.judged.row.hypothesis: v for v in verdicts if v.judged.row.hypothesis in ("H0", "S2")}
    if "H0" not in by:
        return None
    if by["H0"].verdict != "reproduced":
        return ("H0 is not reproduced: with the true delay soft RTC does not beat naive under `lt5`, so the "
                "registered competing explanation stands (soft RTC's own deficit at short delays on this level), "
                "not over-forecasting alone.")
    if "S2" in by and by["S2"].verdict == "reproduced":
        return ("H0 and S2 are reproduced: with the true delay soft RTC beats naive, and the window-max forecast "
                "shrinks that lead significantly, so the exploratory deficit is explained by over-forecasting.")
    return ("H0 is reproduced but S2 is not: soft RTC beats naive with the true delay, and the forecast's cost to "
            "the gap is not significant at the corrected level; neither registered explanation is confirmed.")


CONFIRM_METHODS = ("naive", "rtc_exp", "rtc_hard", "ttrtc", "bid16")


def _cells_part(data: RunData, level: str, out_dir: Path) -> list[str]:
    """A level's figure (solve rate per setup and method) and the table of every cell it ran."""
    slug = figure_slug(level)
    frame = data.cells[data.cells.level == level].copy()
    setups = sorted(frame["setup"].unique())
    plot_tail(data, level, setups, methods_present(data, CONFIRM_METHODS), out_dir / f"confirm_{slug}.png",
              f"{level}: confirmatory tail matrix (held-out seeds)")
    frame["solve"] = frame.apply(solve_ci, axis=1)
    frame = frame.sort_values(["setup", "method"])
    return [f"![solve rate per setup and method on {level}](confirm_{slug}.png)", "",
            "<details><summary>Every cell of the confirmatory run on this level</summary>", "",
            md_table(frame, EVERY_CELL_COLUMNS), "", "</details>", ""]


def _scenario_policy_sha(cell_config: str | None) -> str | None:
    """The sha256 of the scenario's own checkpoint (the BC policy) if this cell ran it, else None (a method
    that names its own checkpoint, e.g. ttrtc)."""
    cfg = json.loads(cell_config or "{}")
    return None if (cfg.get("method") or {}).get("policy") else cfg.get("policy_sha256")


def bc_checkpoints(cells: pd.DataFrame) -> dict[str, str]:
    """level -> the one BC checkpoint (sha256) a run's cells of that level ran as the scenario's policy; a
    UserError for a level with several (a confirmatory run is one training seed's)."""
    out: dict[str, set[str]] = {}
    for level, cfg in zip(cells["level"], cells["cell_config"], strict=True):
        if sha := _scenario_policy_sha(cfg):
            out.setdefault(level, set()).add(sha)
    for level, shas in out.items():
        if len(shas) > 1:
            raise UserError(f"a confirmatory run must run one BC checkpoint per level as its scenario policy; "
                            f"{level} has {len(shas)}", field="--confirm")
    return {level: shas.pop() for level, shas in out.items()}


@dataclass
class Seed:
    """One BC training seed of the families: its checkpoint per level and the runs (parts) made with it."""

    checkpoints: dict[str, str]  # level -> BC sha256
    data: RunData


def load_confirm(conn, runs: list[pd.Series]) -> list[Seed]:
    """The confirmatory runs grouped by training seed: a run joins the first group whose BC checkpoint agrees
    on every level both hold (the parts of one seed's matrix; a part may hold one level only), else starts
    one. Each group is loaded as one `RunData` (`load_runs` checks that its parts pair)."""
    from rtcbench.study.runs import load_runs

    groups: list[tuple[dict[str, str], list[pd.Series]]] = []
    for run in runs:
        cells = conn.execute("SELECT level, cell_config FROM cells WHERE run_id = ?", [run["run_id"]]).df()
        mine = bc_checkpoints(cells)
        for checkpoints, members in groups:
            if all(checkpoints[lv] == sha for lv, sha in mine.items() if lv in checkpoints):
                checkpoints |= mine
                members.append(run)
                break
        else:
            groups.append((dict(mine), [run]))
    return [Seed(checkpoints, load_runs(conn, members)) for checkpoints, members in groups]


def family_verdict(verdicts: list[str], kind: str) -> str:
    """The registered rule across training seeds: *reproduced* on at least 2 seeds and contradicted on none
    (an at-least-as-much row: *holds* when contradicted on none); *contradicted* on at least 2 and
    reproduced on none; else *mixed*. With one seed, that seed's verdict."""
    if len(verdicts) == 1:
        return verdicts[0]
    n_rep, n_con = verdicts.count("reproduced"), verdicts.count("contradicted")
    if kind == "not_worse":
        return "holds (not contradicted)" if n_con == 0 else ("contradicted" if n_con >= 2 else "mixed")
    if n_rep >= 2 and n_con == 0:
        return "reproduced"
    if n_con >= 2 and n_rep == 0:
        return "contradicted"
    return "mixed" if n_rep or n_con else "not significant"


def _predicted(row: Row) -> str:
    return ">= 0" if row.kind == "not_worse" else ("> 0" if row.sign > 0 else "< 0")


def _seed_table(seeds: list[Seed], level: str) -> tuple[list[str], list[Verdict]]:
    """One seed: its rows. Several: per row the family verdict, the effect's spread across seeds and each
    seed's effect and verdict. Returns (table lines, the first seed's verdicts for the decomposition rule)."""
    judged = {seed.checkpoints[level]: judge_level(seed.data, level)[0] for seed in seeds
              if level in seed.checkpoints}
    first = next(iter(judged.values()), [])
    if len(judged) == 1:
        lines = ["| hyp. | comparison | predicted | effect | evidence | p raw | p used | verdict |",
                 "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {v.judged.row.hypothesis} | {v.judged.row.label} | {_predicted(v.judged.row)} | "
                  f"{v.judged.effect:+.3f} | {v.judged.evidence} | {p_value(v.judged.p_raw)} | {p_value(v.p_used)} | "
                  f"**{v.verdict}** |" for v in first]
        return lines, first
    shas = list(judged)
    head = ("| hyp. | comparison | predicted | family verdict | effect min .. max | "
            + " | ".join(f"seed `{sha[:8]}`" for sha in shas) + " |")
    lines = [head, "|" + "---|" * (5 + len(shas))]
    by_label = [{v.judged.row.label: v for v in judged[sha]} for sha in shas]
    for row in registered_rows():
        per = [b.get(row.label) for b in by_label]
        if any(v is None for v in per):
            continue
        effects = [v.judged.effect for v in per]
        lines.append(f"| {row.hypothesis} | {row.label} | {_predicted(row)} | "
                     f"**{family_verdict([v.verdict for v in per], row.kind)}** | "
                     f"{min(effects):+.3f} .. {max(effects):+.3f} | "
                     + " | ".join(f"{v.judged.effect:+.3f} ({p_value(v.p_used)}) {v.verdict}" for v in per) + " |")
    return lines, first


def _seeds_note(seeds: list[Seed], level: str) -> str:
    shas = [seed.checkpoints[level] for seed in seeds if level in seed.checkpoints]
    if len(shas) == 1:
        return (f"BC checkpoint `{shas[0][:12]}`: one training seed. The registered across-seed rule (reproduced "
                "on at least 2 of 3 seeds, contradicted on none) applies once the replicated seeds are run.")
    return (f"BC checkpoints {', '.join(f'`{s[:12]}`' for s in shas)}: {len(shas)} training seeds, each judged as "
            "registered (Holm within the seed's level); the family verdict is the registered rule across seeds "
            "(reproduced on at least 2 and contradicted on none).")


def confirm_section(seeds: list[Seed], out_dir: Path) -> list[str]:
    """The confirmatory section: the rule, then per level the rows (per seed and across seeds where there are
    several), the decomposition rule where it applies, a figure and every cell of the first seed."""
    lines = ["## Confirmatory tail matrix (pre-registered)", "",
             f"Hypotheses, rules and cells as registered in [the pre-registration]({PREREGISTRATION}) before any "
             "of these cells ran. H0 (one per level) is judged at its raw p against alpha "
             f"{ALPHA}; every S row uses its {CORRECTION}-adjusted p over the S rows of its level that were run. "
             "Solve rows: McNemar on paired rollouts (candidate - baseline; rates shown candidate vs baseline). "
             f"Jerk rows compare `{SMOOTHNESS}` ({SMOOTHNESS_LABEL}). "
             "Jerk and gap rows: the paired bootstrap 95% interval of the mean per-rollout difference; p from a "
             "one-sample t-test of the same differences. *at least as much* rows hold unless contradicted.", ""]
    first_data = seeds[0].data
    levels = sorted({lv for seed in seeds for lv in seed.checkpoints})
    for level in levels:
        table, first = _seed_table(seeds, level)
        lines += [f"### {level}", "", _seeds_note(seeds, level), "", *table, ""]
        missing = [r for r in registered_rows() if r.label not in {v.judged.row.label for v in first}]
        if missing:
            lines += ["Not run (cells not in these runs; not in the correction family): "
                      + "; ".join(f"{r.hypothesis} {r.label}" for r in missing) + ".", ""]
        decision = h4_decomposition(first) if level.startswith("l/h4_cartpole") else None
        if decision:
            lines += [f"**h4's exploratory deficit (S2's decision rule, first seed):** {decision}", ""]
        if level in set(first_data.cells["level"]):
            lines += _cells_part(first_data, level, out_dir)
    return lines
