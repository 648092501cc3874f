"""`rtcbench compare`: a paired regression gate between two runs, in one results file or in two.

Cells of the baseline and candidate runs are paired by ``comparability_key`` (and, should one run hold
several cells with the same key, by level, method and setup too). Rollout b of both cells shares its
env seed, so the per-rollout rows are paired:

- solve rate: McNemar's test on the paired solves (`rtcbench.stats.mcnemar`); the effect is the
  difference of solve rates, an absolute threshold (default 0.05 = 5 percentage points);
- smoothness (``jerk_mean_d2``, the mean second difference per executed step, length-independent;
  ``jerk_max_d1``, ``jerk_max_d2``, per-rollout maxima; all on the level's used action dimensions,
  `rtcbench.engine.smoothness`): a paired bootstrap interval of the mean per-rollout difference
  (`rtcbench.stats.paired_bootstrap`); the effect is relative to the baseline mean (default threshold
  0.10 = 10 %), and the ratio candidate / baseline of the means is reported too. A run made before
  schema v5 has no used-dimension smoothness (NULL): its smoothness metrics say "not measured" and never
  decide the cell.

A threshold is written ``METRIC:VALUE`` with VALUE a fraction or a percentage of the metric's own scale
(`parse_thresholds`): ``solve_rate:5%`` = ``solve_rate:0.05`` (5 percentage points),
``jerk_max_d2:10%`` = ``jerk_max_d2:0.10`` (a tenth of the baseline mean).

Without run ids (`pick_candidate`, `pick_baseline`), the candidate is the latest complete run and the
baseline the latest complete run before it that has a cell with one of the candidate's comparability keys,
as pytest-benchmark compares with the latest saved run. The baseline may come from another file.

A metric is *worse* (or *better*) only when its effect is beyond the threshold in the bad (good)
direction **and** the test is significant (p < alpha for McNemar, the interval excludes zero for the
bootstrap). A cell is `worse` if any metric is worse, else `better` if any is better, else
`not significant`. A cell without a partner, or whose env or delay seed differs from its partner's (then
rollout b is not paired), is `not comparable`; a cell with zero rollouts, or whose
stored rollouts do not match its ``n_rollouts``, is `invalid` (never a pass). Cells with different rollout
counts are compared on their common first N rollouts (rollout b depends on the seeds and b alone, so a
run of N rollouts is the first N of any larger run), and the row says so. Rows are ordered by level, setup
and method, naive first (a ``FAMILY.METHOD`` label after the plain ones, each family's naive first).

Cells of the same level, method and setup whose comparability keys differ are one `not comparable` row that
names what differs (`material_differences`): the stored ``cell_config`` JSON of the two cells (what
`rtcbench run` records of the key's material, `rtcbench.scenario.hashing.cell_material`) diffed field by
field, e.g. ``policy sha256 differs; setups[lt5].profile.p_spike 0.05 -> 0.1``, at most
`MAX_DIFFERENCES_SHOWN` of them then ``(+N more)`` (the JSON output lists all). Where no stored field differs,
a file the cell does not store (a trace, a level file, a method's own policy) or the delay schedule version
changed, and the row says so.

A cell that only one run holds, because the other run was made with ``--only`` (``runs.cell_filter``) and is
complete, is not a row: the cells only in one run are listed once, in a note and under
`Comparison.only_in`, and never fail the gate, so a ``--only`` rerun is compared on the cells both runs hold.
A cell missing from a run that is not complete, or that holds its whole scenario, stays `not comparable`.

Exit code: 2 if any cell is invalid or not comparable, or no cell is in both runs (the comparison as a whole
cannot be trusted), else 1 if any cell is worse, else 0.
"""

from __future__ import annotations

import json
import math
import re
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
    "jerk_mean_d2": ("relative_lower", 0.10),
    "jerk_max_d1": ("relative_lower", 0.10),
    "jerk_max_d2": ("relative_lower", 0.10),
}
SMOOTHNESS_METRICS = tuple(name for name, (kind, _) in METRICS.items() if kind == "relative_lower")

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


# The sign a threshold may carry: the direction in which the metric regresses (a drop of the solve rate,
# a rise of jerk). The threshold applies in both directions either way (better and worse).
_REGRESSION_SIGN = {"rate": "-", "relative_lower": "+"}
_THRESHOLD_VALUE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(%?)")


def parse_thresholds(specs: list[str] | None) -> dict[str, float]:
    """["solve_rate:5%", "jerk_max_d2:0.2"] -> thresholds (defaults for metrics not given).

    ``5%`` and ``0.05`` are the same threshold: for solve_rate 5 percentage points (absolute), for jerk 5 % of
    the baseline mean (relative). Malformed values, a sign against the regression direction, a rate threshold
    above 100 % and a metric given twice are refused, naming --threshold."""
    thresholds = {name: default for name, (_, default) in METRICS.items()}
    given: set[str] = set()
    for spec in specs or []:
        name, sep, value = spec.partition(":")
        name = name.strip()
        if not sep or name not in METRICS:
            raise UserError(
                f"expected METRIC:VALUE with METRIC one of {', '.join(METRICS)}, got {spec!r}", field="--threshold"
            )
        if name in given:
            raise UserError(f"{name} is given twice ({spec!r})", field="--threshold")
        given.add(name)
        kind, default = METRICS[name]
        match = _THRESHOLD_VALUE.fullmatch(value.strip())
        if match is None:
            raise UserError(
                f"threshold of {name} must be a number >= 0 or a percentage, e.g. {name}:{default:g} or "
                f"{name}:{100 * default:g}%, got {value!r}", field="--threshold")
        sign, digits, percent = match.groups()
        number = float(digits) / (100.0 if percent else 1.0)
        if sign and sign != _REGRESSION_SIGN[kind]:
            bad = "drop" if kind == "rate" else "rise"
            raise UserError(
                f"{spec!r}: a sign must point the way {name} regresses ({_REGRESSION_SIGN[kind]}, a {bad}); "
                "the threshold applies to both directions, so the sign may also be left out", field="--threshold")
        if kind == "rate" and number > 1:
            raise UserError(f"threshold of {name} is absolute (percentage points of a rate in [0, 1]), so it must "
                            f"be at most 1 (100%), got {value!r}", field="--threshold")
        thresholds[name] = number
    return thresholds


@dataclass
class MetricComparison:
    metric: str
    baseline: float
    candidate: float
    ratio: float | None  # candidate / baseline (None when the baseline is 0)
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
    # not comparable because the comparability keys differ: every stored field that differs
    differences: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    baseline: str
    candidate: str
    cells: list[CellComparison]
    notes: list[str]
    # which -> why this run: given, matched a prefix, or picked (no run id given)
    selection: dict[str, str] = field(default_factory=dict)
    baseline_db: str = ""
    candidate_db: str = ""
    # cells (LEVEL/METHOD/SETUP) held by one run only because the other was made with --only: not compared
    only_in: dict[str, list[str]] = field(default_factory=lambda: {"baseline": [], "candidate": []})

    @property
    def exit_code(self) -> int:
        outcomes = {c.outcome for c in self.cells}
        if not self.cells or outcomes & {INVALID, NOT_COMPARABLE}:
            return EXIT_INVALID
        if WORSE in outcomes:
            return EXIT_REGRESSION
        return EXIT_OK


def _no_run(conn: duckdb.DuckDBPyConnection, run_id: str, db_path: str, flag: str) -> UserError:
    known = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 5").fetchall()]
    return UserError(f"no run {run_id!r} (latest runs: {', '.join(known) or 'none'})", path=db_path, field=flag)


def _run_row(conn: duckdb.DuckDBPyConnection, run_id: str, db_path: str, flag: str) -> dict:
    df = conn.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
    if df.empty:
        raise _no_run(conn, run_id, db_path, flag)
    return df.iloc[0].to_dict()


def resolve_run(conn: duckdb.DuckDBPyConnection, run_id: str, db_path: str, flag: str) -> tuple[str, str]:
    """A run id, a prefix that only one run id of the file starts with, or ``latest`` (the store's
    `resolve_run_id_in`, as every other command takes a run) -> (run id, how it was found)."""
    from rtcbench.store.runs import LATEST, resolve_run_id_in

    found = resolve_run_id_in(conn, run_id, db_path, flag)
    if found == run_id:
        return found, f"given ({flag})"
    if run_id == LATEST:
        return found, f"the latest run ({flag})"
    return found, f"the one run id starting with {run_id!r} ({flag})"


def _when(started) -> str:
    return f"{started:%Y-%m-%d %H:%M:%S}" if started is not None else "at an unknown time"


def pick_candidate(conn: duckdb.DuckDBPyConnection, db_path: str) -> tuple[str, str]:
    """The latest complete run of the file -> (run id, why)."""
    row = conn.execute("SELECT run_id, started_at FROM runs WHERE status = 'complete' "
                       "ORDER BY started_at DESC, run_id DESC LIMIT 1").fetchone()
    if row is None:
        raise UserError("the file holds no complete run to compare; give --candidate RUN", path=db_path,
                        field="--candidate")
    return row[0], f"latest complete run (started {_when(row[1])}; --candidate not given)"


def pick_baseline(conn: duckdb.DuckDBPyConnection, candidate: dict, candidate_keys: set[str], db_path: str, *,
                  same_file: bool) -> tuple[str, str]:
    """The latest complete run that has a cell with one of the candidate's comparability keys -> (run id, why).

    In the candidate's own file it must have started before the candidate; in another file (--baseline-db)
    any complete run but one with the candidate's id qualifies."""
    filters = "r.status = 'complete' AND r.run_id <> $candidate" + (" AND r.started_at < $before" if same_file else "")
    params = {"candidate": candidate["run_id"]} | ({"before": candidate["started_at"]} if same_file else {})
    found = conn.execute(f"""
        SELECT r.run_id, r.started_at, count(DISTINCT c.comparability_key)
        FROM runs r JOIN cells c ON c.run_id = r.run_id
        WHERE {filters} AND list_contains($keys, c.comparability_key)
        GROUP BY r.run_id, r.started_at
        ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1
    """, params | {"keys": sorted(candidate_keys)}).fetchone()
    where = "before the candidate" if same_file else "in the baseline file"
    if found is None:
        n_complete = conn.execute(f"SELECT count(*) FROM runs r WHERE {filters}", params).fetchone()[0]
        raise UserError(
            f"none of the {n_complete} complete runs {where} has a cell with a comparability key of candidate "
            f"{candidate['run_id']} (same level, method, setup, policy and trace); give --baseline RUN",
            path=db_path, field="--baseline")
    run_id, started, n_shared = found
    passed_over = conn.execute(f"SELECT count(*) FROM runs r WHERE {filters} AND r.started_at > $after",
                               params | {"after": started}).fetchone()[0]
    why = (f"latest complete run {where} with a comparable cell (started {_when(started)}; {n_shared} of "
           f"{len(candidate_keys)} comparability keys shared")
    if passed_over:
        why += f"; passed over {passed_over} later complete run{'s' if passed_over != 1 else ''} without one"
    return run_id, why + "; --baseline not given)"


def _rollouts(conn: duckdb.DuckDBPyConnection, cell_id: str) -> pd.DataFrame:
    return conn.execute(
        f"SELECT rollout, solved, {', '.join(SMOOTHNESS_METRICS)} FROM rollouts WHERE cell_id = ? ORDER BY rollout",
        [cell_id]).df()


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


def _row_order(cell: CellComparison) -> tuple:
    """Rows by level, setup, then method with naive (the baseline of every paired table) first; ``FAMILY.METHOD``
    labels (a policy family's methods) after the plain ones, by family, each family's naive first."""
    family, dot, method = cell.method.rpartition(".")
    family, method = (family, method) if dot and family else ("", cell.method)
    return (cell.level, cell.setup, family, method != "naive", method, cell.comparability_key)


# The fields of a stored cell_config (`rtcbench.rows.cell_config`) that the comparability key covers, in the
# order a difference is named; seeds, rollouts and the policy's sidecar summary are not part of the key.
MATERIAL_FIELDS = ("policy_sha256", "level", "method", "setup", "H", "flow_steps", "dt_ms", "max_steps", "fallback")
MAX_DIFFERENCES_SHOWN = 3
_ABSENT = object()


def _flatten(value, path: str, out: dict) -> None:
    """Nested JSON -> {dotted path with [i] indices: leaf value}; empty dicts and lists leave no leaf."""
    if isinstance(value, dict):
        for key in sorted(value):
            _flatten(value[key], f"{path}.{key}", out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", out)
    else:
        out[path] = value


def _shown(value) -> str:
    if value is _ABSENT:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)


def _config(cell: pd.Series) -> dict | None:
    raw = cell.get("cell_config")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return config if isinstance(config, dict) else None


def material_differences(b_config: dict, c_config: dict, *, method: str, setup: str) -> list[str]:
    """The comparability key's stored fields that differ between two cells' ``cell_config`` (baseline first):
    ``policy sha256 differs``, then ``PATH OLD -> NEW`` with the method's fields under ``methods[LABEL]`` and
    the setup's under ``setups[NAME]`` (as a scenario file names them), e.g.
    ``setups[lt5].profile.p_spike 0.05 -> 0.1``; a field present on one side only shows ``(absent)``."""
    prefixes = {"method": f"methods[{method}]", "setup": f"setups[{setup}]"}
    differences = []
    for name in MATERIAL_FIELDS:
        b_value, c_value = b_config.get(name, _ABSENT), c_config.get(name, _ABSENT)
        if b_value == c_value:
            continue
        if name == "policy_sha256":
            differences.append("policy sha256 differs")
            continue
        b_flat: dict = {}
        c_flat: dict = {}
        root = prefixes.get(name, name)
        for value, flat in ((b_value, b_flat), (c_value, c_flat)):
            if value is not _ABSENT:
                _flatten(value, root, flat)
        for path in sorted(set(b_flat) | set(c_flat), key=lambda p: (p not in b_flat, p)):
            old, new = b_flat.get(path, _ABSENT), c_flat.get(path, _ABSENT)
            if old != new or type(old) is not type(new):
                differences.append(f"{path} {_shown(old)} -> {_shown(new)}")
    return differences


def _key_mismatch(entry: CellComparison, b_cell: pd.Series, c_cell: pd.Series) -> CellComparison:
    """Two cells of the same level, method and setup with different comparability keys -> not comparable,
    naming what differs."""
    entry.outcome = NOT_COMPARABLE
    b_config, c_config = _config(b_cell), _config(c_cell)
    if b_config is None or c_config is None:
        which = " and ".join(w for w, cfg in (("baseline", b_config), ("candidate", c_config)) if cfg is None)
        entry.reason = (f"comparability keys differ; the {which} cell stores no configuration (cell_config) to "
                        "name the field")
        return entry
    entry.differences = material_differences(b_config, c_config, method=str(b_cell["method"]),
                                             setup=str(b_cell["setup"]))
    if not entry.differences:
        entry.reason = ("comparability keys differ, but no stored field differs: a file the cell does not store "
                        "changed (the trace, the level file or a method's own policy), or the delay schedule version")
        return entry
    more = len(entry.differences) - MAX_DIFFERENCES_SHOWN
    entry.reason = "; ".join(entry.differences[:MAX_DIFFERENCES_SHOWN]) + (f" (+{more} more)" if more > 0 else "")
    return entry


def _ratio(candidate: float, baseline: float) -> float | None:
    return candidate / baseline if baseline != 0 and math.isfinite(baseline) and math.isfinite(candidate) else None


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
        return MetricComparison(name, b_rate, c_rate, _ratio(c_rate, b_rate), effect, threshold, significant, evidence,
                                WORSE if worse and significant else BETTER if better and significant else NOT_SIGNIFICANT)
    boot = paired_bootstrap(base[name].to_numpy(float), cand[name].to_numpy(float), n_resamples=n_resamples,
                            confidence=1.0 - alpha, seed=seed)
    if boot.n_pairs == 0:  # NULL on one side: a run older than schema v5 never measured it
        return MetricComparison(name, math.nan, math.nan, None, 0.0, threshold, False,
                                "not measured: no rollout has this metric on both sides (a run made before "
                                "schema v5 has no used-dimension smoothness)", NOT_SIGNIFICANT)
    b_mean = boot.baseline_mean
    c_mean = b_mean + boot.diff if boot.n_pairs else math.nan
    effect = boot.diff / b_mean if boot.n_pairs and b_mean > 0 else (0.0 if boot.diff == 0 else math.inf * np.sign(boot.diff))
    evidence = f"bootstrap {100 * (1 - alpha):.0f}% [{boot.low:.4g}, {boot.high:.4g}] of mean diff over {boot.n_pairs} pairs"
    worse, better = effect > threshold, effect < -threshold
    significant = boot.significant
    return MetricComparison(name, b_mean, c_mean, _ratio(c_mean, b_mean), effect, threshold, significant, evidence,
                            WORSE if worse and boot.low > 0 else BETTER if better and boot.high < 0 else NOT_SIGNIFICANT)


def _pair_cells(base: pd.DataFrame, cand: pd.DataFrame) -> list[tuple[pd.Series | None, pd.Series | None]]:
    """Cells of the two runs paired by comparability key (and, where one key holds several cells of a run,
    by level, method and setup too); the cells left over are paired by level, method and setup (their keys
    differ: not comparable, `_key_mismatch`); a cell without a partner either way is paired with None."""

    def ident(row: pd.Series) -> tuple:
        return (row["comparability_key"], row["level"], row["method"], row["setup"])

    base_cells = {ident(r): r for _, r in base.iterrows()}
    cand_cells = {ident(r): r for _, r in cand.iterrows()}
    base_by_key: dict[str, list[tuple]] = {}
    cand_by_key: dict[str, list[tuple]] = {}
    for k in base_cells:
        base_by_key.setdefault(k[0], []).append(k)
    for k in cand_cells:
        cand_by_key.setdefault(k[0], []).append(k)
    pairs: list[tuple[pd.Series | None, pd.Series | None]] = []
    lone: dict[str, dict[tuple, pd.Series]] = {"baseline": {}, "candidate": {}}
    for key in sorted(set(base_by_key) | set(cand_by_key)):
        b_ids, c_ids = base_by_key.get(key, []), cand_by_key.get(key, [])
        if len(b_ids) == 1 and len(c_ids) == 1:  # the key alone pairs them
            pairs.append((base_cells[b_ids[0]], cand_cells[c_ids[0]]))
            continue
        for ident_ in sorted(set(b_ids) | set(c_ids)):
            b_cell, c_cell = base_cells.get(ident_), cand_cells.get(ident_)
            if b_cell is not None and c_cell is not None:
                pairs.append((b_cell, c_cell))
            else:  # no partner with this key: maybe one of the same level, method and setup with another key
                which, cell = ("baseline", b_cell) if c_cell is None else ("candidate", c_cell)
                lone[which].setdefault(ident_[1:], cell)
    for name in sorted(set(lone["baseline"]) | set(lone["candidate"])):
        pairs.append((lone["baseline"].get(name), lone["candidate"].get(name)))
    return pairs


def _compare_pair(b_cell: pd.Series | None, c_cell: pd.Series | None, base_conn, cand_conn, *,
                  thresholds: dict[str, float], alpha: float, n_resamples: int, seed: int) -> CellComparison:
    """One paired cell -> its outcome: not comparable, invalid, or each metric's verdict on the common
    first N rollouts."""
    some = b_cell if b_cell is not None else c_cell
    entry = CellComparison(some["comparability_key"], some["level"], some["method"], some["setup"], NOT_SIGNIFICANT)
    if b_cell is None or c_cell is None:
        missing = "baseline" if b_cell is None else "candidate"
        entry.outcome, entry.reason = NOT_COMPARABLE, (f"no {missing} cell with this comparability key or of "
                                                       "this level, method and setup")
        return entry
    if b_cell["comparability_key"] != c_cell["comparability_key"]:
        return _key_mismatch(entry, b_cell, c_cell)
    b_roll, c_roll = _rollouts(base_conn, b_cell["cell_id"]), _rollouts(cand_conn, c_cell["cell_id"])
    reason = _invalid_reason(b_cell, b_roll, "baseline") or _invalid_reason(c_cell, c_roll, "candidate")
    if reason:
        entry.outcome, entry.reason = INVALID, reason
        return entry
    common = min(len(b_roll), len(c_roll))
    if len(b_roll) != len(c_roll):  # rollout b depends on (seeds, b) only: a smaller run is a prefix
        entry.reason = f"compared on the first {common} rollouts (baseline {len(b_roll)}, candidate {len(c_roll)})"
        b_roll, c_roll = b_roll.iloc[:common], c_roll.iloc[:common]
    seed_reason = _seed_mismatch(b_cell, c_cell)
    if seed_reason:
        entry.outcome, entry.reason = NOT_COMPARABLE, seed_reason
        return entry
    if (b_cell["level"], b_cell["method"], b_cell["setup"]) != (c_cell["level"], c_cell["method"], c_cell["setup"]):
        entry.reason = "; ".join(filter(None, [entry.reason, (
            f"paired by comparability key: candidate is {c_cell['level']}/{c_cell['method']}/{c_cell['setup']}")]))
    entry.metrics = [_compare_metric(name, b_roll, c_roll, thresholds[name], alpha, n_resamples, seed)
                     for name in METRICS]
    verdicts = {m.verdict for m in entry.metrics}
    entry.outcome = WORSE if WORSE in verdicts else BETTER if BETTER in verdicts else NOT_SIGNIFICANT
    return entry


def compare_runs(conn: duckdb.DuckDBPyConnection, baseline: str | None, candidate: str | None, *,
                 thresholds: dict[str, float], alpha: float = 0.05, n_resamples: int = 4000, seed: int = 0,
                 db_path: str = "", baseline_conn: duckdb.DuckDBPyConnection | None = None,
                 baseline_db_path: str | None = None) -> Comparison:
    """Compare two runs cell by cell. `conn` holds the candidate (and the baseline, unless `baseline_conn`
    is another file's connection). A run id may be a unique prefix; None picks the run (`pick_candidate`,
    `pick_baseline`) and `Comparison.selection` says why."""
    notes: list[str] = []
    same_file = baseline_conn is None or baseline_conn is conn
    conns = {"baseline": conn if same_file else baseline_conn, "candidate": conn}
    paths = {"baseline": db_path if same_file or baseline_db_path is None else baseline_db_path, "candidate": db_path}
    selection: dict[str, str] = {}
    if candidate is None:
        candidate, selection["candidate"] = pick_candidate(conn, db_path)
    else:
        candidate, selection["candidate"] = resolve_run(conn, candidate, db_path, "--candidate")
    cand_row = _run_row(conn, candidate, db_path, "--candidate")
    cand_frame = conn.execute("SELECT * FROM cells WHERE run_id = ?", [candidate]).df()
    if baseline is None:
        if cand_frame.empty:
            cell = CellComparison("", "", "", "", INVALID,
                                  f"candidate run {candidate} has no cells, so no baseline could be picked for it")
            return Comparison("", candidate, [cell], notes, selection, paths["baseline"], db_path)
        baseline, selection["baseline"] = pick_baseline(conns["baseline"], cand_row,
                                                        set(cand_frame["comparability_key"]), paths["baseline"],
                                                        same_file=same_file)
    else:
        baseline, selection["baseline"] = resolve_run(conns["baseline"], baseline, paths["baseline"], "--baseline")
    runs = {"baseline": _run_row(conns["baseline"], baseline, paths["baseline"], "--baseline"), "candidate": cand_row}
    if same_file and baseline == candidate:
        notes.append(f"baseline and candidate are the same run {candidate}")
    for which, row in runs.items():
        if row["status"] != "complete":
            notes.append(f"{which} run {row['run_id']} has status {row['status']!r}: cells it never wrote are not comparable")
    cell_frames = {"baseline": conns["baseline"].execute("SELECT * FROM cells WHERE run_id = ?", [baseline]).df(),
                   "candidate": cand_frame}

    only_in: dict[str, list[str]] = {"baseline": [], "candidate": []}

    def result(cells: list[CellComparison]) -> Comparison:
        return Comparison(baseline, candidate, sorted(cells, key=_row_order), notes, selection, paths["baseline"],
                          db_path, only_in)

    results: list[CellComparison] = []
    for which, frame in cell_frames.items():
        if frame.empty:
            results.append(CellComparison("", "", "", "", INVALID, f"{which} run {runs[which]['run_id']} has no cells"))
    if results:
        return result(results)

    for b_cell, c_cell in _pair_cells(cell_frames["baseline"], cell_frames["candidate"]):
        if (b_cell is None) != (c_cell is None):
            held, lacking = ("candidate", "baseline") if b_cell is None else ("baseline", "candidate")
            if _made_with_only(runs[lacking]):  # a subset on purpose: a note, never a failing row
                cell = c_cell if b_cell is None else b_cell
                only_in[held].append(f"{cell['level']}/{cell['method']}/{cell['setup']}")
                continue
        results.append(_compare_pair(b_cell, c_cell, conns["baseline"], conn, thresholds=thresholds, alpha=alpha,
                                     n_resamples=n_resamples, seed=seed))
    for held, lacking in (("baseline", "candidate"), ("candidate", "baseline")):
        if only_in[held]:
            only_in[held].sort()
            notes.append(_only_in_note(held, lacking, only_in[held], runs[lacking]))
    if not results:
        notes.append("no cell is in both runs, so nothing was compared")
    return result(results)


MAX_CELLS_NOTED = 12


def _made_with_only(run: dict) -> bool:
    """A complete run made with --only: it holds the cells its filter kept, so the others are missing on purpose."""
    cell_filter = run.get("cell_filter")
    return run.get("status") == "complete" and isinstance(cell_filter, str) and bool(cell_filter)


def _only_in_note(held: str, lacking: str, cells: list[str], lacking_run: dict) -> str:
    shown = ", ".join(cells[:MAX_CELLS_NOTED]) + (f" (+{len(cells) - MAX_CELLS_NOTED} more)"
                                                  if len(cells) > MAX_CELLS_NOTED else "")
    n = len(cells)
    return (f"{n} cell{'s' if n != 1 else ''} only in the {held} run, not compared (the {lacking} run "
            f"{lacking_run['run_id']} was made with --only {lacking_run['cell_filter']!r}): {shown}")
