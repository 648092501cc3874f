"""Results in pandas: a results file's runs, cells, rollouts and delays as DataFrames, read-only.

A user guide in one example::

    import rtcbench.results

    with rtcbench.results.open("rtcbench.duckdb") as res:
        runs = res.runs()                        # one row per `rtcbench run`, oldest first
        cells = res.cells("latest")              # the newest run's cells, with its status and provenance
        naive = res.rollouts("latest", cell="s/h4_thrust_aim/naive/longtail")   # LEVEL/METHOD/SETUP
        delays = res.delays("20250101-120000")   # a unique prefix of a run id works too

    print(cells[["level", "method", "setup", "solve_rate", "jerk_mean_d2"]])
    print(naive["solved"].mean(), delays.groupby("setup")["d"].quantile(0.99))

`open(path)` takes an existing file (nothing is created or migrated; a file of an older schema version is
refused with a hint to run `rtcbench migrate`). Wherever a method takes ``run``, it is a run id, a unique
prefix of one, or ``latest`` (the newest run by start time, whatever its status); ``None`` means every run
of the file. An unknown or ambiguous run is a `rtcbench.errors.UserError` naming the runs the file has.

The frames, and what they hold:

- `Results.runs`: the ``runs`` table (scenario identity, provenance, status, timing), by start time.
- `Results.cells`: the ``v_cells`` view: every ``cells`` column (identity, outcomes with Wilson intervals,
  delay statistics, smoothness, cost, ``cell_config``) plus the run's ``run_status``, ``run_started_at``,
  ``scenario_version``, ``git_commit``, ``git_dirty``, ``rtcbench_version``, ``jax_backend``,
  ``device_kind`` and ``host``. ``cell_config`` is the canonical JSON text as stored (so the frame is what
  an export's ``v_cells.parquet`` holds); ``parse_config=True`` turns it into dicts.
- `Results.rollouts`: the ``v_rollouts`` view: one row per rollout (``solved``, return, length, smoothness,
  stalls, inference counts) with its cell's ``run_id``, ``scenario``, ``level``, ``method``, ``setup`` and
  ``comparability_key``; ``cell`` picks one cell by ``cell_id`` or ``LEVEL/METHOD/SETUP``.
- `Results.delays`: the ``v_delays`` view: one row per asynchronous inference (k >= 1) with its start step
  ``tau``, true delay ``d``, delay on the control timeline ``d_control``, forecast ``dhat``, actions consumed
  ``s``, and the flags ``violation`` (``d_control > chunk_size - s``) and ``forecast_miss``
  (``d_control > dhat``).

Rows come in a fixed order (run, level, method, setup, then rollout and inference index). The frames are
Arrow's conversion to pandas, the same as ``pandas.read_parquet`` gives for the files `rtcbench export`
writes: an export read back equals these frames. So an integer column that holds a NULL arrives as
float64 with NaN (a boolean one as object with None), as pandas does for Parquet.

The connection is read-only but holds the file's read lock while open: a `rtcbench run` writing the same
file waits for it (up to its lock timeout), so use ``with`` or call `Results.close`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd

from rtcbench.errors import UserError
from rtcbench.store.db import read_only
from rtcbench.store.runs import resolve_run_id_in

# What one run's export holds, in order: (name, SELECT of that run's rows with the run id bound to $run).
# The tables as stored, then the three views; the views' SELECTs are the ones `Results` runs.
# Views come by their runs' start time (as `Results.runs`), then by cell, rollout and inference index.
_VIEW_ORDER = {
    "v_cells": "v.level, v.method, v.setup",
    "v_rollouts": "v.level, v.method, v.setup, v.rollout",
    "v_delays": "v.level, v.method, v.setup, v.rollout, v.k",
}


def _view_sql(view: str, where: str) -> str:
    return (f"SELECT v.* FROM {view} v JOIN runs r USING (run_id) WHERE {where} "
            f"ORDER BY r.started_at, v.run_id, {_VIEW_ORDER[view]}")


RUN_TABLES: tuple[tuple[str, str], ...] = (
    ("runs", "SELECT * FROM runs WHERE run_id = $run"),
    ("cells", "SELECT * FROM cells WHERE run_id = $run ORDER BY level, method, setup"),
    ("rollouts", "SELECT ro.* FROM rollouts ro JOIN cells c USING (cell_id) WHERE c.run_id = $run "
                 "ORDER BY c.level, c.method, c.setup, ro.rollout"),
    ("inferences", "SELECT i.* FROM inferences i JOIN cells c USING (cell_id) WHERE c.run_id = $run "
                   "ORDER BY c.level, c.method, c.setup, i.rollout, i.k"),
    *((view, _view_sql(view, "v.run_id = $run")) for view in _VIEW_ORDER),
)


def open(db_path: str | os.PathLike, *, lock_timeout_s: float | None = None) -> Results:
    """Open an existing results file read-only -> `Results` (also a context manager that closes it)."""
    stack = ExitStack()
    conn = stack.enter_context(read_only(db_path, lock_timeout_s=lock_timeout_s, require_current=True))
    return Results(conn, Path(db_path), stack)


class Results:
    """One results file open read-only; each method runs one query and returns a new DataFrame."""

    def __init__(self, conn, db_path: Path, stack: ExitStack | None = None):
        self._conn = conn
        self.db_path = db_path
        self._stack = stack

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (and release the file's read lock). Closing twice is harmless."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    @property
    def schema_version(self) -> int:
        """The file's schema version (the current one: older files are refused by `open`)."""
        return int(self._conn.execute("SELECT max(version) FROM schema_version").fetchall()[0][0])

    def run_id(self, run: str, *, field: str = "run") -> str:
        """A run id, a unique prefix of one or ``latest`` -> the run id; a UserError on `field` otherwise."""
        return resolve_run_id_in(self._conn, str(run), str(self.db_path), field)

    # -- frames ------------------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """The ``runs`` table, oldest run first."""
        return self._frame("SELECT * FROM runs ORDER BY started_at, run_id", {})

    def cells(self, run: str | None = None, *, parse_config: bool = False) -> pd.DataFrame:
        """Cells (the ``v_cells`` view) of one run, or of every run; ``cell_config`` as JSON text, or as dicts
        with ``parse_config=True``."""
        frame = self._view("v_cells", run)
        if parse_config:
            frame["cell_config"] = [json.loads(v) if isinstance(v, str) else None for v in frame["cell_config"]]
        return frame

    def rollouts(self, run: str | None = None, cell: str | None = None) -> pd.DataFrame:
        """Rollouts (the ``v_rollouts`` view) of one run or every run, optionally of one cell: its ``cell_id``,
        or ``LEVEL/METHOD/SETUP`` (the level may hold '/', e.g. ``s/h4_thrust_aim/naive/longtail``)."""
        if cell is None:
            return self._view("v_rollouts", run)
        run_id = None if run is None else self.run_id(run)
        where, params = self._cell_filter(cell, run_id)
        return self._frame(_view_sql("v_rollouts", where), params)

    def delays(self, run: str | None = None) -> pd.DataFrame:
        """Asynchronous inferences (the ``v_delays`` view, k >= 1) of one run, or of every run."""
        return self._view("v_delays", run)

    @contextmanager
    def run_table(self, name: str, run_id: str, batch_rows: int = 1 << 17) -> Iterator:
        """One of `RUN_TABLES` for one (resolved) run id as a stream of Arrow record batches, a
        ``pyarrow.RecordBatchReader`` (what `rtcbench export` writes, without holding a table in memory)."""
        cursor = self._conn.cursor()
        try:
            yield cursor.sql(dict(RUN_TABLES)[name], params={"run": run_id}).to_arrow_reader(batch_rows)
        finally:
            cursor.close()

    # -- helpers -------------------------------------------------------------------------------------
    def _view(self, view: str, run: str | None) -> pd.DataFrame:
        if run is None:
            return self._frame(_view_sql(view, "true"), {})
        return self._frame(dict(RUN_TABLES)[view], {"run": self.run_id(run)})

    def _frame(self, sql: str, params: dict) -> pd.DataFrame:
        # A cursor of its own: the relation API refuses a connection whose last execute() was not read to the end.
        cursor = self._conn.cursor()
        try:
            return cursor.sql(sql, params=params or None).to_arrow_table().to_pandas()
        finally:
            cursor.close()

    def _cell_filter(self, cell: str, run_id: str | None) -> tuple[str, dict]:
        if "/" in cell:
            parts = cell.rsplit("/", 2)
            if len(parts) != 3 or not all(parts):
                raise UserError(f"expected a cell_id or LEVEL/METHOD/SETUP, got {cell!r}", path=str(self.db_path),
                                field="cell")
            where, params = "v.level = $level AND v.method = $method AND v.setup = $setup", dict(
                zip(("level", "method", "setup"), parts, strict=True))
        else:
            where, params = "v.cell_id = $cell", {"cell": cell}
        if run_id is not None:
            where, params = f"{where} AND v.run_id = $run", params | {"run": run_id}
        cursor = self._conn.cursor()
        try:
            found = cursor.sql(f"SELECT count(*) FROM cells v WHERE {where}", params=params).fetchall()[0][0]
            if not found:
                known = cursor.sql(
                    "SELECT DISTINCT level || '/' || method || '/' || setup AS c FROM cells"
                    + (" WHERE run_id = $run" if run_id is not None else "") + " ORDER BY c LIMIT 6",
                    params={"run": run_id} if run_id is not None else None).fetchall()
        finally:
            cursor.close()
        if not found:
            scope = f"run {run_id}" if run_id is not None else "this file"
            shown = ", ".join(r[0] for r in known[:5]) + (", ..." if len(known) > 5 else "")
            raise UserError(f"no cell {cell!r} in {scope} (cells: {shown or 'none'})", path=str(self.db_path),
                            field="cell")
        return where, params
