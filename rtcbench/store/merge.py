"""`rtcbench merge A.duckdb [B.duckdb ...] --into C.duckdb`: join results files (issue #15, item 3).

A sweep split across machines leaves one results file per machine; merging copies their runs, cells,
rollouts and per-inference rows into one file. The rules:

- **Files.** The target (``--into``) is created if missing, else checked whole (`check_intact`) and
  migrated to the current schema version. Sources are opened read-only and never written. Every source
  is checked before the target is touched: missing, a directory, not an rtcbench store, truncated, or a
  schema version newer than this rtcbench -> exit 2 naming the file, and nothing is written (a target
  that did not exist is not left behind). A source equal to the target, or given twice, is refused.
- **Old sources.** A source at an older schema version is read as it is: columns are copied by name and
  those it lacks are NULL (runs made before v3 have no ``device_count``, ``executor``,
  ``rollout_shards``, ``cell_filter``); a v1 file has no ``inferences`` table, so its cells bring none.
  A column that this rtcbench does not know is refused rather than dropped. A column a later version
  renamed is read under its old name: before v5 the all-dimension smoothness was called ``jerk_*``, so a
  v1-v4 source's ``jerk_*`` go to ``jerk_all_*`` and its used-dimension ``jerk_*`` are NULL (never measured).
- **Runs.** A run whose ``run_id`` is not in the target is copied with all its cells, rollouts and
  inferences. A run already there is never duplicated: only the cells the target lacks are added. If
  the two run rows have different ``config_hash`` they are two different runs under one id: refused.
  The target's run row is kept, with one exception: when the source's row says ``complete`` and the
  target's does not, and both planned the same cells (same ``cell_filter`` and ``n_cells_planned``),
  the target now holds every cell the source's complete run had, so the source's lifecycle columns
  (``status``, ``ended_at``, ``error``, ``wall_s``, ``compile_s``) replace the target's. Other
  disagreements (status, ``cell_filter``) keep the target's row and are printed as notes.
- **Cells.** A cell is present when the target holds its ``cell_id`` or its (run_id, level, method,
  setup) key; present cells are skipped with their rollouts and inferences, never duplicated or
  overwritten. The same ``cell_id`` with different content (any column) means one of the files was
  altered: refused. The same key under another ``cell_id`` is the cell computed twice (two resumes of a
  copied file): refused if the cell's ``config_hash`` differs, else the target's cell is kept and a note
  says how many, and how many of those had a different solve rate or rollout count.
- **One transaction.** Migration and every insert happen in one transaction on the target, so any
  failure (a conflict found in the third source, a disk error) leaves the target as it was. The target
  is opened like every store write: another process holding its lock is waited for, with the bounded
  retry of `rtcbench.store.db.with_lock_retry` (``RTCBENCH_DB_LOCK_TIMEOUT``); so are sources being
  written by a run at that moment. Sources are attached read-only to the target's connection and
  copied by DuckDB itself (no rows pass through Python).
- Merging a file whose runs and cells are all in the target adds nothing; merging twice is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from rtcbench.errors import UserError
from rtcbench.store import schema
from rtcbench.store.db import (
    StoreLockedError,
    check_db_path,
    check_intact,
    is_lock_error,
    lock_timeout_from_env,
    read_only,
    with_lock_retry,
)
from rtcbench.store.migrations import JERK_NAMES, V5_RENAMES, migrate

SOURCE_FIELD = "SOURCE"
INTO_FIELD = "--into"
TABLES = (schema.runs, schema.cells, schema.rollouts, schema.inferences)
REQUIRED_TABLES = ("runs", "cells", "rollouts")  # every schema version has them; inferences since v2
CELL_KEY = ("run_id", "level", "method", "setup")
RUN_LIFECYCLE = ("status", "ended_at", "error", "wall_s", "compile_s")


@dataclass
class SourceSummary:
    """What one source brought into the target."""

    path: Path
    version: int  # the source's schema version
    runs_added: int = 0
    runs_extended: int = 0  # runs already in the target that gained cells
    runs_completed: int = 0  # runs whose target row took the source's 'complete' lifecycle
    cells_added: int = 0
    cells_skipped: int = 0  # already in the target (same cell_id, or same run/level/method/setup)
    rollouts_added: int = 0
    inferences_added: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class MergeSummary:
    into: Path
    created: bool
    version_before: int  # the target's schema version before the merge (0: new file)
    version_after: int
    sources: list[SourceSummary]
    runs: int  # rows in the target after the merge
    cells: int


def _refield(exc: UserError, new_field: str) -> UserError:
    """`exc` naming `new_field` instead of ``--db`` (the store's checks speak of the --db option)."""
    if exc.field != "--db":
        return exc
    where = f"{exc.path}: field '--db'" if exc.path else "field '--db'"
    message = str(exc).removeprefix(where + ": ")
    return type(exc)(message, path=exc.path, field=new_field)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_paths(sources: Sequence[Path], into: Path) -> None:
    if not sources:
        raise UserError("give at least one results file to merge", field=SOURCE_FIELD)
    try:
        check_db_path(into, must_exist=False)
    except UserError as exc:
        raise _refield(exc, INTO_FIELD) from None
    for i, path in enumerate(sources):
        if _same_file(path, into):
            raise UserError(f"is also the --into file; merge into a different file (the target {into} is written, "
                            "sources are only read)", path=str(path), field=SOURCE_FIELD)
        for other in sources[:i]:
            if _same_file(path, other):
                raise UserError(f"is given twice (as {other} and {path})", path=str(path), field=SOURCE_FIELD)


def _check_source(path: Path, timeout: float) -> int:
    """Open a source read-only: an intact rtcbench store of a known version -> its schema version."""
    try:
        with read_only(path, lock_timeout_s=timeout) as conn:
            version = int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
            tables = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    except UserError as exc:
        raise _refield(exc, SOURCE_FIELD) from None
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise UserError(f"is not a complete rtcbench results database: it lacks the table(s) {', '.join(missing)}",
                        path=str(path), field=SOURCE_FIELD)
    return version


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 12 else text[:12] + "..."


def _shown(value) -> str:
    return "NULL" if value is None else repr(value)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Source:
    """A source attached to the target's connection as `alias`."""

    def __init__(self, raw, alias: str, path: Path, version: int):
        self.raw, self.alias, self.path, self.version = raw, alias, path, version
        rows = raw.execute("SELECT table_name, column_name FROM information_schema.columns "
                           "WHERE table_catalog = ? AND table_schema = 'main'", [alias]).fetchall()
        self.columns: dict[str, set[str]] = {}
        for table, column in rows:
            self.columns.setdefault(table, set()).add(column)
        for table in TABLES:
            known = {c.name for c in table.columns} | (set(V5_RENAMES.values()) if version < 5 else set())
            extra = sorted(self.columns.get(table.name, set()) - known)
            if extra:
                raise UserError(f"table {table.name} has column(s) {', '.join(extra)} that this rtcbench does not "
                                "know; they would be lost in the merge", path=str(path), field=SOURCE_FIELD)

    def table(self, name: str) -> str:
        return f"{self.alias}.main.{name}"

    def source_name(self, table: sa.Table, column: str) -> str | None:
        """The name under which the source holds today's `column`, or None where its version lacks it."""
        if self.version < 5 and table.name in ("cells", "rollouts"):
            if column in V5_RENAMES:  # jerk_all_* were called jerk_* before v5
                column = V5_RENAMES[column]
            elif column in JERK_NAMES:  # the used-dimension jerk_* did not exist before v5
                return None
        return column if column in self.columns.get(table.name, ()) else None

    def expr(self, table: sa.Table, column: str) -> str:
        """The source's value of `column` (row alias ``s``), or NULL where the source's version lacks it."""
        name = self.source_name(table, column)
        return f"s.{_q(name)}" if name is not None else "NULL"

    def copy(self, table: sa.Table, where: str, params: list) -> int:
        """INSERT the source rows of `table` matching `where` into the target -> rows inserted."""
        if table.name not in self.columns:
            return 0
        names = [c.name for c in table.columns]
        select = ", ".join(self.expr(table, n) for n in names)
        sql = (f"INSERT INTO main.{table.name} ({', '.join(_q(n) for n in names)}) "
               f"SELECT {select} FROM {self.table(table.name)} s WHERE {where}")
        try:
            return int(self.raw.execute(sql, params).fetchone()[0])
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"could not copy its {table.name} rows into the target: {first}", path=str(self.path),
                            field=SOURCE_FIELD) from None


def _merge_source(src: _Source, into: Path, origin: dict[str, Path], version: int) -> SourceSummary:
    """Copy what the target lacks from one attached source (inside the target's transaction)."""
    raw, summary = src.raw, SourceSummary(path=src.path, version=version)
    runs_t, cells_t = src.table("runs"), src.table("cells")

    def where_from(run_id: str) -> str:
        return f" (added from {origin[run_id]} in this merge)" if run_id in origin else ""

    clash = raw.execute(f"SELECT s.run_id, s.config_hash, t.config_hash FROM {runs_t} s JOIN main.runs t "
                        "USING (run_id) WHERE s.config_hash IS DISTINCT FROM t.config_hash ORDER BY 1").fetchall()
    if clash:
        run_id, theirs, ours = clash[0]
        raise UserError(
            f"run {run_id} has config hash {_short(theirs)} here but {_short(ours)} in {into}"
            f"{where_from(run_id)}: two different runs share one id, and merging would mix their cells; "
            f"nothing was merged ({len(clash)} run(s) conflict)", path=str(src.path), field="config_hash")

    common = sorted(c.name for c in schema.cells.columns if src.source_name(schema.cells, c.name) is not None)
    differs = " OR ".join(f"{src.expr(schema.cells, c)} IS DISTINCT FROM t.{_q(c)}" for c in common)
    altered = raw.execute(f"SELECT s.cell_id FROM {cells_t} s JOIN main.cells t USING (cell_id) WHERE {differs} "
                          "ORDER BY 1").fetchall()
    if altered:
        cell_id = altered[0][0]
        flags = raw.execute(f"SELECT {', '.join(f'{src.expr(schema.cells, c)} IS DISTINCT FROM t.{_q(c)}' for c in common)} "
                            f"FROM {cells_t} s JOIN main.cells t USING (cell_id) WHERE cell_id = ?", [cell_id]).fetchone()
        columns = [c for c, flag in zip(common, flags, strict=True) if flag]
        raise UserError(f"cell {cell_id} is also in {into} with different content (columns {', '.join(columns)}): "
                        f"one of the files was altered; nothing was merged ({len(altered)} cell(s) differ)",
                        path=str(src.path), field="cells")

    same_key = " AND ".join(f"t.{_q(c)} = s.{_q(c)}" for c in CELL_KEY)
    twice = raw.execute(
        f"SELECT s.run_id, s.level, s.method, s.setup, s.config_hash IS DISTINCT FROM t.config_hash, "
        f"s.n_rollouts IS DISTINCT FROM t.n_rollouts OR s.solve_rate IS DISTINCT FROM t.solve_rate "
        f"FROM {cells_t} s JOIN main.cells t ON {same_key} AND t.cell_id <> s.cell_id ORDER BY 1, 2, 3, 4").fetchall()
    other_config = [r for r in twice if r[4]]
    if other_config:
        run_id, level, method, setup = other_config[0][:4]
        raise UserError(f"cell level={level!r} method={method!r} setup={setup!r} of run {run_id} is also in {into} "
                        f"made from a different cell configuration (config_hash); nothing was merged",
                        path=str(src.path), field="cells")
    if twice:
        unequal = sum(1 for r in twice if r[5])
        summary.notes.append(
            f"{len(twice)} cell(s) were computed in both files (same run, level, method, setup; other cell ids): "
            f"kept the target's" + (f"; {unequal} of them with a different solve rate or rollout count" if unequal else ""))

    new_cells = raw.execute(
        f"SELECT s.cell_id, s.run_id FROM {cells_t} s WHERE NOT EXISTS (SELECT 1 FROM main.cells t "
        f"WHERE t.cell_id = s.cell_id OR ({same_key})) ORDER BY 1").fetchall()
    n_source_cells = int(raw.execute(f"SELECT count(*) FROM {cells_t}").fetchone()[0])
    new_runs = [r[0] for r in raw.execute(
        f"SELECT run_id FROM {runs_t} WHERE run_id NOT IN (SELECT run_id FROM main.runs) ORDER BY 1").fetchall()]
    target_runs = {r[0] for r in raw.execute("SELECT run_id FROM main.runs").fetchall()}
    extended = {run_id for _, run_id in new_cells} & target_runs

    # Notes on runs already present whose rows disagree, before anything changes.
    run_expr = {c: src.expr(schema.runs, c) for c in ("status", "cell_filter", "n_cells_planned")}
    both = raw.execute(
        f"SELECT s.run_id, {run_expr['status']}, t.status, {run_expr['cell_filter']}, t.cell_filter, "
        f"{run_expr['n_cells_planned']} = t.n_cells_planned FROM {runs_t} s JOIN main.runs t USING (run_id) "
        "ORDER BY 1").fetchall()

    ids = [cell_id for cell_id, _ in new_cells]
    in_new = "s.cell_id IN (SELECT unnest(?::VARCHAR[]))"
    summary.runs_added = src.copy(schema.runs, "s.run_id IN (SELECT unnest(?::VARCHAR[]))", [new_runs]) if new_runs else 0
    if ids:
        summary.cells_added = src.copy(schema.cells, in_new, [ids])
        summary.rollouts_added = src.copy(schema.rollouts, in_new, [ids])
        summary.inferences_added = src.copy(schema.inferences, in_new, [ids])
    summary.cells_skipped = n_source_cells - summary.cells_added
    summary.runs_extended = len(extended)
    for run_id in new_runs:
        origin[run_id] = src.path

    for run_id, status, target_status, cell_filter, target_filter, same_plan in both:
        if status == target_status and cell_filter == target_filter:
            continue
        if status == "complete" and cell_filter == target_filter and same_plan:
            lifecycle = ", ".join(f"{_q(c)} = {src.expr(schema.runs, c)}" for c in RUN_LIFECYCLE)
            raw.execute(f"UPDATE main.runs AS t SET {lifecycle} FROM {runs_t} s "
                        "WHERE t.run_id = s.run_id AND s.run_id = ?", [run_id])
            summary.runs_completed += 1
            summary.notes.append(f"run {run_id}: marked complete (was {target_status!r} in the target; every cell "
                                 "of the source's complete run is now there)")
        else:
            summary.notes.append(f"run {run_id}: kept the target's row (status {target_status!r}, cell_filter "
                                 f"{_shown(target_filter)}); this file says status {status!r}, cell_filter "
                                 f"{_shown(cell_filter)}")
    for run_id in new_runs:
        status = raw.execute(f"SELECT status FROM {runs_t} WHERE run_id = ?", [run_id]).fetchone()[0]
        if status != "complete":
            summary.notes.append(f"run {run_id} is {status!r} in this file; copied as it is")
    return summary


def merge_files(sources: Sequence[str | os.PathLike], into: str | os.PathLike, *,
                lock_timeout_s: float | None = None) -> MergeSummary:
    """Merge the results files `sources` into `into` (created if missing) in one transaction -> summary.

    Raises `UserError` (nothing written) for a bad file, a source equal to the target, or conflicting
    runs or cells; see the module docstring for the rules.
    """
    paths = [Path(p) for p in sources]
    into = Path(into)
    timeout = lock_timeout_from_env() if lock_timeout_s is None else lock_timeout_s
    _check_paths(paths, into)
    versions = [_check_source(p, timeout) for p in paths]  # all of them, before the target is touched

    created = not into.exists()
    engine = sa.create_engine(sa.engine.URL.create("duckdb", database=str(into)), poolclass=NullPool)

    locked = [into]  # the file whose lock was last in the way

    def attempt() -> MergeSummary:
        # A lock error on the target (connect) or on a source (ATTACH aborts the transaction) propagates
        # as duckdb's IOException, so with_lock_retry waits and tries the whole merge again.
        locked[0] = into
        conn = engine.connect()
        try:
            with conn.begin():
                check_intact(lambda q: conn.execute(sa.text(q)).fetchall(), into)
                before, after = migrate(conn, str(into))  # before ATTACH: it lists the tables of every catalog
                raw = conn.connection.driver_connection
                attached = []
                for i, path in enumerate(paths):
                    alias = f"rtcbench_merge_src{i}"
                    quoted = str(path.resolve()).replace("'", "''")
                    try:
                        raw.execute(f"ATTACH '{quoted}' AS {alias} (READ_ONLY)")
                    except duckdb.Error as exc:
                        if "lock" in str(exc).lower():
                            locked[0] = path
                            raise
                        first = str(exc).strip().splitlines()[0]
                        raise UserError(f"cannot open the database file: {first}", path=str(path),
                                        field=SOURCE_FIELD) from None
                    attached.append(_Source(raw, alias, path, versions[i]))
                origin: dict[str, Path] = {}
                summaries = [_merge_source(src, into, origin, v) for src, v in zip(attached, versions, strict=True)]
                runs, cells = (int(raw.execute(f"SELECT count(*) FROM main.{t}").fetchone()[0]) for t in ("runs", "cells"))
                for src in attached:
                    raw.execute(f"DETACH {src.alias}")
            return MergeSummary(into=into, created=created, version_before=before, version_after=after,
                                sources=summaries, runs=runs, cells=cells)
        except (duckdb.Error, sa.exc.DBAPIError) as exc:
            if is_lock_error(exc):
                raise
            orig = getattr(exc, "orig", exc)
            first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
            raise UserError(f"the merge failed and nothing was written: {first}", path=str(into),
                            field=INTO_FIELD) from None
        finally:
            conn.close()

    try:
        return with_lock_retry(attempt, into, timeout)
    except StoreLockedError as exc:
        if locked[0] == into:
            raise  # another process has the target open: it is theirs now, whoever created it
        _remove_if_created(into, created)
        message = str(exc).removeprefix(f"{into}: ")
        raise StoreLockedError(message, path=str(locked[0]), field=SOURCE_FIELD) from None
    except UserError as exc:
        _remove_if_created(into, created)
        raise _refield(exc, INTO_FIELD) from None
    except BaseException:
        _remove_if_created(into, created)
        raise
    finally:
        engine.dispose()


def _remove_if_created(path: Path, created: bool) -> None:
    """A failed merge into a new file leaves no (empty) file behind."""
    if created:
        for leftover in (path, Path(str(path) + ".wal")):
            leftover.unlink(missing_ok=True)
