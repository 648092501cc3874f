"""`rtcbench compare`: a paired regression gate between two runs in one results file.

Cells of the baseline and candidate runs are paired by ``comparability_key`` (and, should one run hold
several cells with the same key, by level, method and setup too). Rollout b of both cells shares its
env seed, so the per-rollout rows are paired:

- solve rate: McNemar's test on the paired solves (`rtcbench.stats.mcnemar`); the effect is the
  difference of solve rates, an absolute threshold (default 0.05);
- jerk (``jerk_max_d1``, ``jerk_max_d2``): a paired bootstrap interval of the mean per-rollout
  difference (`rtcbench.stats.paired_bootstrap`); the effect is relative to the baseline mean
  (default threshold 0.10 = 10 %).

A metric is *worse* (or *better*) only when its effect is beyond the threshold in the bad (good)
direction **and** the test is significant (p < alpha for McNemar, the interval excludes zero for the
bootstrap). A cell is `worse` if any metric is worse, else `better` if any is better, else
`not significant`. A cell without a partner, or whose env or delay seed differs from its partner's (then
rollout b is not paired), is `not comparable`; a cell with zero rollouts, or whose
stored rollouts do not match its ``n_rollouts``, is `invalid` (never a pass).

Exit code: 2 if any cell is invalid or not comparable (the comparison as a whole cannot be trusted),
else 1 if any cell is worse, else 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from rtcbench.errors import UserError
from rtcbench.stats import mcnemar, paired_bootstrap

# metric -> (kind, default threshold). "rate": absolute difference, higher is better.
# "relative_lower": relative to the baseline mean, lower is better.
METRICS: dict[str, tuple[str, float]] = {
    "solve_rate": ("rate", 0.05),
    "jerk_max_d1": ("relative_lower", 0.10),
    "jerk_max_d2": ("relative_lower", 0.10),
}

BETTER, WORSE, NOT_SIGNIFICANT, NOT_COMPARABLE, INVALID = (
    "better",
    "worse",
    "not significant",
    "not comparable",
    "invalid",
)
# Exit codes of `rtcbench compare` (a CI job branches on them; pytest's convention where it has one):
#   0 no regression; 1 regression (some cell worse); 2 invalid or not comparable results (a cell with
#   zero rollouts, a failed run, a changed policy or trace); 4 usage error (a flag, a run id or the
#   database file is wrong: the comparison never ran).
EXIT_OK, EXIT_REGRESSION, EXIT_INVALID, EXIT_USAGE = 0, 1, 2, 4


def parse_thresholds(specs: list[str] | None) -> dict[str, float]:
    """["solve_rate:0.05", "jerk_max_d2:0.2"] -> thresholds (defaults for metrics not given)."""
    thresholds = {name: default for name, (_, default) in METRICS.items()}
    for spec in specs or []:
        name, sep, value = spec.partition(":")
        if not sep or name not in METRICS:
            raise UserError(
                f"expected METRIC:VALUE with METRIC one of {', '.join(METRICS)}, got {spec!r}", field="--threshold"
            )
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise UserError(f"threshold of {name} must be a finite number >= 0, got {value!r}", field="--threshold")
        thresholds[name] = number
    return thresholds


@dataclass
class MetricComparison:
    metric: str
    baseline: float
    candidate: float
    effect: float  # solve_rate: candidate - baseline; jerk: (candidate - baseline) / baseline
    threshold: float
    significant: bool
    evidence: str  # e.g. "McNemar exact p=0.003 (b=12, c=1)" or "bootstrap 95% [0.01, 0.05]"
    verdict: str  # better | worse | not significant


@dataclass
class CellComparison:
    comparability_key: str
    level: str
    method: str
    setup: str
    outcome: str
    reason: str = ""
    metrics: list[MetricComparison] = field(default_factory=list)


@dataclass
class Comparison:
    baseline: str
    candidate: str
    cells: list[CellComparison]
    notes: list[str]

    @property
    def exit_code(self) -> int:
        outcomes = {c.outcome for c in self.cells}
        if not self.cells or outcomes & {INVALID, NOT_COMPARABLE}:
            return EXIT_INVALID
        if WORSE in outcomes:
            return EXIT_REGRESSION
        return EXIT_OK


def _run_row(conn: duckdb.DuckDBPyConnection, run_id: str, db_path: str, flag: str) -> dict:
    df = conn.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
    if df.empty:
        known = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 5").fetchall()]
        raise UserError(f"no run {run_id!r} (latest runs: {', '.join(known) or 'none'})", path=db_path, field=flag)
    return df.iloc[0].to_dict()


def _rollouts(conn: duckdb.DuckDBPyConnection, cell_id: str) -> pd.DataFrame:
    return conn.execute(
        "SELECT rollout, solved, jerk_max_d1, jerk_max_d2 FROM rollouts WHERE cell_id = ? ORDER BY rollout", [cell_id]
    ).df()


def _invalid_reason(cell: pd.Series, rollouts: pd.DataFrame, which: str) -> str | None:
    n = int(cell["n_rollouts"])
    if n <= 0:
        return f"{which} cell has zero rollouts"
    if len(rollouts) != n or not np.array_equal(rollouts["rollout"].to_numpy(), np.arange(n)):
        return f"{which} cell stores {len(rollouts)} rollout rows, expected {n} (indices 0..{n - 1})"
    return None


def _seeds(cell: pd.Series) -> dict | None:
    raw = cell.get("cell_config")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return json.loads(raw).get("seeds")
    except (json.JSONDecodeError, AttributeError):
        return None


def _seed_mismatch(b_cell: pd.Series, c_cell: pd.Series) -> str | None:
    """Rollout b is paired across runs only when both drew env states and delays from the same seeds."""
    b_seeds, c_seeds = _seeds(b_cell), _seeds(c_cell)
    if b_seeds is None or c_seeds is None:
        return None
    for name in ("env", "delay"):
        if b_seeds.get(name) != c_seeds.get(name):
            return (f"{name} seeds differ ({b_seeds.get(name)} vs {c_seeds.get(name)}): rollouts are not paired, "
                    "so the paired tests do not apply")
    return None


def _compare_metric(name: str, base: pd.DataFrame, cand: pd.DataFrame, threshold: float, alpha: float,
                    n_resamples: int, seed: int) -> MetricComparison:
    kind, _ = METRICS[name]
    if kind == "rate":
        result = mcnemar(base["solved"].to_numpy(bool), cand["solved"].to_numpy(bool))
        b_rate, c_rate = float(base["solved"].mean()), float(cand["solved"].mean())
        effect = c_rate - b_rate
        significant = result.p_value < alpha
        evidence = (f"McNemar {result.method} p={result.p_value:.3g} "
                    f"(baseline-only {result.baseline_only}, candidate-only {result.candidate_only})")
        worse, better = effect < -threshold, effect > threshold
        return MetricComparison(name, b_rate, c_rate, effect, threshold, significant, evidence,
                                WORSE if worse and significant else BETTER if better and significant else NOT_SIGNIFICANT)
    boot = paired_bootstrap(base[name].to_numpy(float), cand[name].to_numpy(float), n_resamples=n_resamples,
                            confidence=1.0 - alpha, seed=seed)
    b_mean = boot.baseline_mean
    c_mean = b_mean + boot.diff if boot.n_pairs else math.nan
    effect = boot.diff / b_mean if boot.n_pairs and b_mean > 0 else (0.0 if boot.diff == 0 else math.inf * np.sign(boot.diff))
    evidence = f"bootstrap {100 * (1 - alpha):.0f}% [{boot.low:.4g}, {boot.high:.4g}] of mean diff over {boot.n_pairs} pairs"
    worse, better = effect > threshold, effect < -threshold
    significant = boot.significant
    return MetricComparison(name, b_mean, c_mean, effect, threshold, significant, evidence,
                            WORSE if worse and boot.low > 0 else BETTER if better and boot.high < 0 else NOT_SIGNIFICANT)


def compare_runs(conn: duckdb.DuckDBPyConnection, baseline: str, candidate: str, *, thresholds: dict[str, float],
                 alpha: float = 0.05, n_resamples: int = 4000, seed: int = 0, db_path: str = "") -> Comparison:
    notes: list[str] = []
    runs = {"baseline": _run_row(conn, baseline, db_path, "--baseline"),
            "candidate": _run_row(conn, candidate, db_path, "--candidate")}
    for which, row in runs.items():
        if row["status"] != "complete":
            notes.append(f"{which} run {row['run_id']} has status {row['status']!r}: cells it never wrote are not comparable")
    cell_frames = {which: conn.execute("SELECT * FROM cells WHERE run_id = ?", [row["run_id"]]).df()
                   for which, row in runs.items()}
    results: list[CellComparison] = []
    for which, frame in cell_frames.items():
        if frame.empty:
            results.append(CellComparison("", "", "", "", INVALID, f"{which} run {runs[which]['run_id']} has no cells"))
    if results:
        return Comparison(baseline, candidate, results, notes)

    def ident(row: pd.Series) -> tuple:
        return (row["comparability_key"], row["level"], row["method"], row["setup"])

    base_cells = {ident(r): r for _, r in cell_frames["baseline"].iterrows()}
    cand_cells = {ident(r): r for _, r in cell_frames["candidate"].iterrows()}
    base_by_key: dict[str, list[tuple]] = {}
    cand_by_key: dict[str, list[tuple]] = {}
    for k in base_cells:
        base_by_key.setdefault(k[0], []).append(k)
    for k in cand_cells:
        cand_by_key.setdefault(k[0], []).append(k)

    pairs: list[tuple[pd.Series | None, pd.Series | None]] = []
    for key in sorted(set(base_by_key) | set(cand_by_key)):
        b_ids, c_ids = base_by_key.get(key, []), cand_by_key.get(key, [])
        if len(b_ids) == 1 and len(c_ids) == 1:  # the key alone pairs them
            pairs.append((base_cells[b_ids[0]], cand_cells[c_ids[0]]))
            continue
        for ident_ in sorted(set(b_ids) | set(c_ids)):
            pairs.append((base_cells.get(ident_), cand_cells.get(ident_)))

    for b_cell, c_cell in pairs:
        some = b_cell if b_cell is not None else c_cell
        entry = CellComparison(some["comparability_key"], some["level"], some["method"], some["setup"], NOT_SIGNIFICANT)
        if b_cell is None or c_cell is None:
            missing = "baseline" if b_cell is None else "candidate"
            entry.outcome, entry.reason = NOT_COMPARABLE, f"no {missing} cell with this comparability key"
            results.append(entry)
            continue
        b_roll, c_roll = _rollouts(conn, b_cell["cell_id"]), _rollouts(conn, c_cell["cell_id"])
        reason = _invalid_reason(b_cell, b_roll, "baseline") or _invalid_reason(c_cell, c_roll, "candidate")
        if reason:
            entry.outcome, entry.reason = INVALID, reason
            results.append(entry)
            continue
        if len(b_roll) != len(c_roll):
            entry.outcome = NOT_COMPARABLE
            entry.reason = f"rollout counts differ ({len(b_roll)} vs {len(c_roll)}): rollouts cannot be paired"
            results.append(entry)
            continue
        seed_reason = _seed_mismatch(b_cell, c_cell)
        if seed_reason:
            entry.outcome, entry.reason = NOT_COMPARABLE, seed_reason
            results.append(entry)
            continue
        if (b_cell["level"], b_cell["method"], b_cell["setup"]) != (c_cell["level"], c_cell["method"], c_cell["setup"]):
            entry.reason = (f"paired by comparability key: candidate is {c_cell['level']}/{c_cell['method']}/"
                            f"{c_cell['setup']}")
        entry.metrics = [_compare_metric(name, b_roll, c_roll, thresholds[name], alpha, n_resamples, seed)
                         for name in METRICS]
        verdicts = {m.verdict for m in entry.metrics}
        entry.outcome = WORSE if WORSE in verdicts else BETTER if BETTER in verdicts else NOT_SIGNIFICANT
        results.append(entry)
    return Comparison(baseline, candidate, results, notes)
