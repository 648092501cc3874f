"""The study's inputs: runs found in the results file, their cells and per-rollout outcomes (`RunData`),
checked for the shape the study's parts need, and the `rtcbench bench` JSON lines of the cost part.

Every cell and rollout comes from ``reports/study_cells.sql`` and ``reports/study_rollouts.sql`` (read-only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from rtcbench.errors import NESTED_TOO_DEEPLY, UserError, os_error_reason
from rtcbench.report.queries import REPORTS_DIR, load_query
from rtcbench.report.style import PAPER_METHODS
from rtcbench.store.runs import resolve_run_id_in

SWEEP_SETUPS = ("d0", "d1", "d2", "d3", "d4")
SWEEP_METHODS = PAPER_METHODS  # naive, rtc_exp, rtc_hard, bid16, te, ttrtc
TAIL_METHODS = ("naive", "rtc_exp", "rtc_hard", "bid16")
# The reference of Q0 and Q1: the long tail, adaptive horizon, window-max forecast.
TAIL_BASELINE_SETUP = "lt5.adaptive.wmax"


@dataclass
class RunData:
    """One or more runs of one scenario (e.g. one per level), their cells concatenated."""

    runs: list[pd.Series]  # the runs' rows of the runs table
    cells: pd.DataFrame  # one row per cell (study_cells.sql, plus run_id)
    outcomes: dict[str, pd.DataFrame]  # cell_id -> rollouts (study_rollouts.sql) sorted by rollout

    def cell(self, level: str, setup: str, method: str) -> pd.Series | None:
        """The cell of (level, setup, method), None if the runs lack it."""
        rows = self.cells[(self.cells.level == level) & (self.cells.setup == setup) & (self.cells.method == method)]
        return None if rows.empty else rows.iloc[0]

    def rollouts(self, level: str, setup: str, method: str) -> pd.DataFrame | None:
        """The per-rollout outcomes of one cell, None if the runs lack it."""
        row = self.cell(level, setup, method)
        return None if row is None else self.outcomes.get(row["cell_id"])


def is_dirty(run: pd.Series) -> bool:
    """The run was made from a checkout with uncommitted changes (NULL, e.g. an installed wheel: not known)."""
    value = run.get("git_dirty")
    return bool(pd.notna(value) and bool(value))


def _check_clean(run: pd.Series, db_path: str, flag: str, allow_dirty: bool) -> None:
    """A study reads only runs made from a clean tree, so that every number traces to a commit."""
    if is_dirty(run) and not allow_dirty:
        raise UserError(f"run {run['run_id']} was made from a dirty tree (uncommitted changes at commit "
                        f"{str(run.get('git_commit'))[:10]}): its code is not any commit's. Rerun it from a clean "
                        "checkout, or pass --allow-dirty to use it anyway (the page then marks it dirty)",
                        path=db_path, field=flag)


def find_runs(conn: duckdb.DuckDBPyConnection, scenario: str, run_ids: list[str], db_path: str,
              flag: str, *, allow_dirty: bool = False) -> list[pd.Series]:
    """The given runs (each an id, a unique prefix of one or ``latest``; each must be complete and, unless
    `allow_dirty`, made from a clean tree), else the latest complete run of the scenario."""
    if run_ids:
        out = []
        for given in run_ids:
            run_id = resolve_run_id_in(conn, given, db_path, flag)  # an id, a unique prefix, or `latest`
            frame = conn.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
            if frame.iloc[0]["status"] != "complete":
                raise UserError(f"run {run_id!r} has status {frame.iloc[0]['status']!r}; the study needs complete "
                                "runs (finish it with `rtcbench run --resume`)", path=db_path, field=flag)
            _check_clean(frame.iloc[0], db_path, flag, allow_dirty)
            out.append(frame.iloc[0])
        return out
    frame = conn.execute("SELECT * FROM runs WHERE scenario = ? AND status = 'complete' ORDER BY started_at DESC "
                         "LIMIT 1", [scenario]).df()
    if frame.empty:
        raise UserError(f"no complete run of scenario {scenario!r} in this file (run `rtcbench run "
                        f"bench/scenarios/{scenario}.yaml` first, or pass {flag} RUN_ID)", path=db_path, field=flag)
    _check_clean(frame.iloc[0], db_path, flag, allow_dirty)
    return [frame.iloc[0]]


def seed_role(cells: pd.DataFrame) -> str:
    """``exploratory`` when every cell used seeds 0 (every run made before the pre-registration of
    docs/study/preregistration_tail.md did), else ``held-out seeds d/e/p`` (confirmatory where a
    pre-registration names those seeds)."""
    seeds = {json.dumps(json.loads(c or "{}").get("seeds"), sort_keys=True) for c in cells["cell_config"]}
    parsed = [json.loads(s) or {} for s in seeds]
    if not all(parsed):
        return "seeds not recorded"
    if all(int(v) == 0 for p in parsed for v in p.values()):
        return "exploratory (seeds 0)"
    shown = "; ".join("/".join(str(p.get(k)) for k in ("delay", "env", "policy")) for p in parsed)
    return f"held-out seeds {shown} (delay/env/policy)"


def _pairing(cell_config: str | None) -> str:
    """What makes rollouts of two cells pair: their seeds and rollout count (from the stored cell config)."""
    cfg = json.loads(cell_config or "{}")
    return json.dumps([cfg.get("seeds"), cfg.get("rollouts")], sort_keys=True)


def _check_complete(run: pd.Series, cells: pd.DataFrame, got: dict[str, pd.DataFrame]) -> None:
    """Every cell must have all its rollouts stored, else its paired tests would pair the wrong rollouts."""
    for _, cell in cells.iterrows():
        n = len(got.get(cell["cell_id"], ()))
        if n != int(cell["n_rollouts"]) or n == 0:
            raise UserError(f"cell {cell['level']} | {cell['method']} | {cell['setup']} of run {run['run_id']} "
                            f"has {n} stored rollouts for n_rollouts={int(cell['n_rollouts'])}: invalid, not "
                            "usable for paired tests", field="rollouts")


def _check_shared_levels(frame: pd.DataFrame, run: pd.Series, cells: pd.DataFrame) -> None:
    """Two runs may share a level only as parts of one paired design (see `load_runs`)."""
    shared = set(frame["level"]) & set(cells["level"])
    if not shared:
        return
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
        _check_complete(run, cells, got)
        for frame in frames:
            _check_shared_levels(frame, run, cells)
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
    """Every level must hold `setups`, naive and one of the other `methods`; else a user error naming `flag`."""
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


def methods_present(data: RunData, wanted: tuple[str, ...]) -> list[str]:
    """The methods of `wanted` the runs hold, in `wanted`'s order."""
    have = set(data.cells["method"])
    return [m for m in wanted if m in have]


def figure_slug(level: str) -> str:
    """A level name as part of a figure's file name: ``l/h4_cartpole:packed`` -> ``l_h4_cartpole_packed``."""
    return level.replace("/", "_").replace(":", "_")


def _bench_text(path: Path) -> str:
    """The text of one ``--bench`` file; a missing, non-regular, unreadable or binary file is a `UserError`."""
    if path.is_dir():
        raise UserError("is a directory; give a JSON-lines file written by `rtcbench bench`", path=str(path),
                        field="--bench")
    if not path.is_file():
        what = "exists but is not a regular file" if path.exists() else "does not exist"
        raise UserError(f"bench file {what}", path=str(path), field="--bench")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"is not UTF-8 text (byte {exc.start}); give the JSON-lines file written by `rtcbench bench`",
                        path=str(path), field="--bench") from None
    except OSError as exc:
        raise UserError(f"cannot be read: {os_error_reason(exc)}", path=str(path), field="--bench") from None


def read_bench_lines(paths: list[Path]) -> list[dict]:
    """The records of `rtcbench bench` JSON-lines files, each with its file name as ``source``."""
    out = []
    for path in paths:
        for i, line in enumerate(_bench_text(path).splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"line {i + 1} is not JSON ({exc.msg})", path=str(path), field="--bench") from None
            except RecursionError:
                raise UserError(f"line {i + 1} {NESTED_TOO_DEEPLY}", path=str(path), field="--bench") from None
            if not isinstance(row, dict) or "engine_steps_per_s" not in row:
                raise UserError(f"line {i + 1} is not a `rtcbench bench` record", path=str(path), field="--bench")
            out.append({"source": path.name, **row})
    return out
