"""The report's data: the SQL files in ``reports/`` run on a read-only connection, and which run to report.

Every number of `rtcbench report` (and of `rtcbench study`, through ``study_*.sql``) comes from a query in
``reports/*.sql`` (`REPORTS_DIR`: the checkout's folder, or the wheel's copy, see `rtcbench.shipped`); each
takes the run id as ``$run_id``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from rtcbench.errors import UserError
from rtcbench.report.style import ordered_methods
from rtcbench.shipped import shipped_dir

REPORTS_DIR = shipped_dir("reports")
# The queries of `rtcbench report`, by file name: provenance, one row per cell, per-rollout outcome and
# smoothness, the delay and forecast distributions per setup, and the timeline failure rates per cell.
QUERIES = ("run", "cells", "jerk", "delay_survival", "rates")


def load_query(name: str, reports_dir: Path = REPORTS_DIR) -> str:
    """The text of ``reports_dir/NAME.sql``; a user error naming the folder when it is missing."""
    path = reports_dir / f"{name}.sql"
    if not path.is_file():
        raise UserError(f"report query {name}.sql is missing (expected in {reports_dir})", path=str(path))
    return path.read_text()


def pick_run(conn: duckdb.DuckDBPyConnection, run_id: str | None, db_path: str) -> str:
    """The given run (an id, a unique prefix of one, or ``latest``), else the latest complete run, else the
    latest run."""
    if run_id:
        from rtcbench.store.runs import resolve_run_id_in

        return resolve_run_id_in(conn, run_id, db_path, "--run")
    row = conn.execute(
        "SELECT run_id FROM runs ORDER BY status = 'complete' DESC, started_at DESC LIMIT 1").fetchone()
    if row is None:
        raise UserError("the file holds no runs yet (write one with `rtcbench run`)", path=db_path)
    return row[0]


def run_queries(conn: duckdb.DuckDBPyConnection, run_id: str, reports_dir: Path = REPORTS_DIR) -> dict[str, pd.DataFrame]:
    """Every query of `QUERIES` on one run -> {query name: its rows}."""
    return {name: conn.execute(load_query(name, reports_dir), {"run_id": run_id}).df() for name in QUERIES}


def sort_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by level, setup (as stored), then method in the report's method order (naive first)."""
    if frame.empty:
        return frame
    levels = {v: i for i, v in enumerate(dict.fromkeys(frame["level"]))}
    setups = {v: i for i, v in enumerate(dict.fromkeys(frame["setup"]))}
    methods = {m: i for i, m in enumerate(ordered_methods(frame["method"]))}
    order = sorted(range(len(frame)), key=lambda i: (levels[frame["level"].iat[i]], setups[frame["setup"].iat[i]],
                                                     methods[frame["method"].iat[i]]))
    return frame.iloc[order].reset_index(drop=True)
