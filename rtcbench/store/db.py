"""Opening the results file, writing runs and cells, and read-only connections.

DuckDB lets one process at a time open a file for writing (and a reader's shared lock blocks writers).
So the store never keeps the file open: every write opens a connection, runs one short transaction
and closes it. A connection refused because another process holds the lock is retried with a
jittered backoff for a bounded time (`lock_timeout_s`, default 120 s, env ``RTCBENCH_DB_LOCK_TIMEOUT``),
then fails with a `StoreLockedError` that names the file.

Writes use SQLAlchemy Core on duckdb-engine. Per-rollout and per-inference rows are inserted from
Arrow tables through the same connection, inside the same transaction, so a cell is all or nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from rtcbench.errors import UserError
from rtcbench.store import schema
from rtcbench.store.migrations import check_known_version, current_version, migrate, store_version

DEFAULT_DB = "rtcbench.duckdb"
ENV_DB = "RTCBENCH_DB"
ENV_LOCK_TIMEOUT = "RTCBENCH_DB_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 120.0

T = TypeVar("T")


class StoreLockedError(UserError):
    """Another process held the file's lock for longer than the bounded wait."""


class CellExistsError(UserError):
    """The (run_id, level, method, setup) cell is already stored (e.g. two resumes of one run)."""


class StoreWriteError(UserError):
    """A transaction failed in the storage layer (a full disk, ``ulimit -f``, a read-only file): nothing of
    it was written. Raised with the file and DuckDB's reason instead of a SQLAlchemy traceback."""


# DuckDB's errors of the file and the transaction itself (IOException, TransactionException, out of
# memory, a database invalidated by an earlier fatal error), as opposed to errors of a statement.
STORAGE_ERRORS = (OSError, duckdb.OperationalError, duckdb.FatalException)


def storage_error(exc: BaseException, path: Path) -> StoreWriteError | None:
    """`StoreWriteError` for a storage-layer failure (raw or wrapped by SQLAlchemy), else None."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if not isinstance(orig, STORAGE_ERRORS) or is_lock_error(orig):
        return None
    text = str(orig).strip()
    reason = text.splitlines()[0] if text else type(orig).__name__
    return StoreWriteError(f"cannot write to the database file: {reason}; the failed transaction wrote nothing "
                           "(free some space or choose a writable --db)", path=str(path), field="--db")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def resolve_db_path(cli_value: str | os.PathLike | None) -> Path:
    """--db if given, else $RTCBENCH_DB, else ./rtcbench.duckdb."""
    if cli_value:
        return Path(cli_value)
    return Path(os.environ.get(ENV_DB) or DEFAULT_DB)


def lock_timeout_from_env() -> float:
    raw = os.environ.get(ENV_LOCK_TIMEOUT)
    if raw is None:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"must be a positive number of seconds, got {raw!r}", field=ENV_LOCK_TIMEOUT)
    return value


def check_db_path(path: Path, *, must_exist: bool) -> None:
    """Refuse a path that cannot be a database file, before anything is written."""
    text = str(path)
    if text == ":memory:" or text.startswith(":memory:"):
        raise UserError(
            "is DuckDB's in-memory database: a run's results would vanish when it ends; give a file path",
            path=text, field="--db",
        )
    if "?" in text:
        raise UserError(
            "contains '?', which reads as URL parameters (DuckDB settings are not taken from --db); "
            "give a plain file path",
            path=text, field="--db",
        )
    if path.is_dir():
        raise UserError("is a directory; give the path of a DuckDB file (e.g. results.duckdb)", path=str(path), field="--db")
    if must_exist and not path.exists():
        raise UserError("no such database file (create one with `rtcbench run`)", path=str(path), field="--db")
    if not must_exist and not path.parent.exists():
        raise UserError(f"directory {str(path.parent)!r} does not exist", path=str(path), field="--db")
    if path.exists() and not os.access(path, os.R_OK):
        raise UserError("database file is not readable", path=str(path), field="--db")


# DuckDB's file layout: one 4 KiB file header and two 4 KiB database headers, then fixed-size blocks
# numbered from 0. tests/store/test_schema.py checks this against fresh files, so a change fails there.
DUCKDB_HEADER_BYTES = 3 * 4096


def check_intact(execute: Callable[[str], list], path: Path) -> None:
    """Refuse a file too short to hold the blocks its own metadata uses (a truncated copy or download).

    DuckDB opens such a file and answers from its metadata (schema version, counts), then fails with an
    IOException when a query reaches a missing block, after a run has computed its cells. The bound is
    a lower one, so it never refuses a whole file: every used block and every table segment's block id
    must lie inside the file (free blocks at the end may legitimately be cut off by DuckDB itself).
    Skipped while a write-ahead log sits beside the file: its blocks are not in the file yet.
    """
    if Path(str(path) + ".wal").exists():
        return
    block_size, used_blocks = execute("SELECT block_size, used_blocks FROM pragma_database_size()")[0]
    needed = int(used_blocks)
    for (table,) in execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"):
        quoted = str(table).replace("'", "''")
        top = execute(f"SELECT max(block_id) FROM pragma_storage_info('{quoted}')")[0][0]
        if top is not None and int(top) >= 0:
            needed = max(needed, int(top) + 1)
    expected = DUCKDB_HEADER_BYTES + int(block_size) * needed
    actual = path.stat().st_size
    if actual < expected:
        raise UserError(
            f"is truncated or damaged: {actual:,} bytes where its data needs at least {needed} blocks "
            f"({expected:,} bytes); restore it from a copy",
            path=str(path), field="--db",
        )


def is_lock_error(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, duckdb.IOException) and "lock" in str(orig).lower()


def _open_error(exc: BaseException, path: Path) -> UserError:
    orig = getattr(exc, "orig", exc)
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return UserError(f"cannot open the database file: {first_line}", path=str(path), field="--db")


def with_lock_retry(open_fn: Callable[[], T], path: Path, timeout_s: float) -> T:
    """Call `open_fn` until it does not fail on the file lock, for at most `timeout_s` seconds: tenacity's
    full-jitter exponential backoff (20 ms doubling, each wait at most 0.5 s), so writers that collide do not
    retry in lockstep. Any other failure is a `UserError` at once."""
    from tenacity import RetryError, Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    retrying = Retrying(retry=retry_if_exception(is_lock_error), stop=stop_after_delay(timeout_s),
                        wait=wait_random_exponential(multiplier=0.02, max=0.5))
    try:
        for attempt in retrying:
            with attempt:
                try:
                    return open_fn()
                except (sa.exc.DBAPIError, duckdb.Error) as exc:
                    if not is_lock_error(exc):
                        raise _open_error(exc, path) from None
                    raise
    except RetryError:
        raise StoreLockedError(
            f"another process held the database lock for more than {timeout_s:g} s "
            f"(DuckDB allows one writing process per file); retry later or raise {ENV_LOCK_TIMEOUT}",
            path=str(path),
        ) from None
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


def _arrow_table(columns: Mapping[str, np.ndarray]):
    import pyarrow as pa

    return pa.table({name: np.asarray(values) for name, values in columns.items()})


class Store:
    """One DuckDB results file. Cheap to construct; connections are opened per operation."""

    def __init__(self, path: str | os.PathLike, *, lock_timeout_s: float | None = None):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_from_env() if lock_timeout_s is None else lock_timeout_s
        self.last_connect_s = 0.0
        # URL.create keeps the path literal: a string URL would read '?' or '#' in a file name as syntax.
        self._engine = sa.create_engine(sa.engine.URL.create("duckdb", database=str(self.path)), poolclass=NullPool)

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, lock_timeout_s: float | None = None) -> Store:
        """Check the path, create the file if needed and migrate it to the current schema version."""
        store = cls(path, lock_timeout_s=lock_timeout_s)
        check_db_path(store.path, must_exist=False)
        store.migrate()
        return store

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A short write transaction; the file is locked only inside the block. A storage-layer failure
        (disk full, ``ulimit -f``) rolls it back and is a `StoreWriteError` naming the file."""
        t0 = time.monotonic()
        conn = with_lock_retry(self._engine.connect, self.path, self.lock_timeout_s)
        self.last_connect_s = time.monotonic() - t0  # includes any wait for another process's lock
        try:
            with conn.begin():
                yield conn
        except (sa.exc.DBAPIError, *STORAGE_ERRORS) as exc:
            translated = storage_error(exc, self.path)
            if translated is None:
                raise
            raise translated from None
        finally:
            with suppress(sa.exc.SQLAlchemyError, duckdb.Error):  # closing after a failed commit may fail too
                conn.close()

    def migrate(self, target: int = schema.SCHEMA_VERSION) -> tuple[int, int]:
        """Check the file is whole, then bring it to `target` (Store.open calls this before any work)."""
        with self.transaction() as conn:
            check_intact(lambda q: conn.execute(sa.text(q)).fetchall(), self.path)
            return migrate(conn, str(self.path), target)

    def version(self) -> int:
        with self.transaction() as conn:
            return current_version(conn, str(self.path))

    # -- runs ------------------------------------------------------------------------------------
    @staticmethod
    def new_run_id() -> str:
        return f"{utcnow():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"

    def create_run(self, row: Mapping) -> str:
        """Insert a run row with status 'running' -> run_id."""
        values = dict(row)
        values.setdefault("run_id", self.new_run_id())
        values.setdefault("started_at", utcnow())
        values["status"] = "running"
        with self.transaction() as conn:
            conn.execute(sa.insert(schema.runs).values(**values))
        return values["run_id"]

    def get_run(self, run_id: str) -> dict | None:
        with self.transaction() as conn:
            row = conn.execute(sa.select(schema.runs).where(schema.runs.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def restart_run(self, run_id: str) -> None:
        """Mark a resumed run as running again (clears the previous end time and error)."""
        with self.transaction() as conn:
            conn.execute(
                sa.update(schema.runs)
                .where(schema.runs.c.run_id == run_id)
                .values(status="running", error=None, ended_at=None)
            )

    def finish_run(self, run_id: str, *, status: str, error: str | None = None, wall_s: float | None = None,
                   compile_s: float | None = None) -> None:
        if status not in schema.RUN_STATUSES or status == "running":
            raise ValueError(f"finish status must be 'complete' or 'failed', got {status!r}")
        values: dict = {"status": status, "error": error, "ended_at": utcnow()}
        if wall_s is not None:
            values["wall_s"] = wall_s
        if compile_s is not None:
            values["compile_s"] = compile_s
        with self.transaction() as conn:
            conn.execute(sa.update(schema.runs).where(schema.runs.c.run_id == run_id).values(**values))

    def cells_done(self, run_id: str) -> set[tuple[str, str, str]]:
        """(level, method, setup) of the cells already stored for a run."""
        c = schema.cells.c
        with self.transaction() as conn:
            rows = conn.execute(sa.select(c.level, c.method, c.setup).where(c.run_id == run_id)).all()
        return {tuple(r) for r in rows}

    # -- cells -----------------------------------------------------------------------------------
    def write_cell(
        self,
        cell: Mapping,
        per_rollout: Mapping[str, np.ndarray],
        inferences: Mapping[str, np.ndarray] | None = None,
    ) -> str:
        """Write one finished cell, its rollouts and (optionally) its inferences in one transaction -> cell_id.

        `per_rollout` maps rollouts-table column names (`schema.ROLLOUT_COLUMNS`) to arrays [B].
        `inferences` maps `schema.INFERENCE_COLUMNS` to flat arrays (one entry per inference).
        """
        missing = [name for name in schema.ROLLOUT_COLUMNS if name not in per_rollout]
        if missing:
            raise ValueError(f"per_rollout lacks columns {missing}")
        n = int(cell["n_rollouts"])
        lengths = {name: len(per_rollout[name]) for name in schema.ROLLOUT_COLUMNS}
        if any(v != n for v in lengths.values()):
            raise ValueError(f"per-rollout arrays must all have n_rollouts={n} entries, got {lengths}")
        cell_id = uuid.uuid4().hex
        cell_values = dict(cell, cell_id=cell_id, written_at=utcnow())
        if isinstance(cell_values.get("cell_config"), dict):
            cell_values["cell_config"] = json.dumps(cell_values["cell_config"], sort_keys=True)
        rollout_cols = {"cell_id": np.full(n, cell_id), "rollout": np.arange(n, dtype=np.int32)}
        rollout_cols.update({name: np.asarray(per_rollout[name]) for name in schema.ROLLOUT_COLUMNS})
        rollout_table = _arrow_table(rollout_cols)
        inference_table = None
        if inferences is not None:
            m = len(inferences["k"])
            inference_cols = {"cell_id": np.full(m, cell_id)}
            inference_cols.update({name: np.asarray(inferences[name], dtype=np.int32) for name in schema.INFERENCE_COLUMNS})
            inference_table = _arrow_table(inference_cols)
        rollout_names = ", ".join(f'"{c}"' for c in rollout_cols)
        try:
            with self.transaction() as conn:
                conn.execute(sa.insert(schema.cells).values(**cell_values))
                raw = conn.connection.driver_connection
                raw.register("_rtcbench_rollouts_in", rollout_table)
                raw.execute(f"INSERT INTO rollouts ({rollout_names}) SELECT {rollout_names} FROM _rtcbench_rollouts_in")
                raw.unregister("_rtcbench_rollouts_in")
                if inference_table is not None:
                    names = ", ".join(inference_table.column_names)
                    raw.register("_rtcbench_inferences_in", inference_table)
                    raw.execute(f"INSERT INTO inferences ({names}) SELECT {names} FROM _rtcbench_inferences_in")
                    raw.unregister("_rtcbench_inferences_in")
        except sa.exc.IntegrityError as exc:
            if "uq_cells" in str(exc) or "Duplicate key" in str(exc) or "unique" in str(exc).lower():
                raise CellExistsError(
                    f"cell level={cell['level']!r} method={cell['method']!r} setup={cell['setup']!r} of run "
                    f"{cell['run_id']} is already stored (is another process resuming the same run?)",
                    path=str(self.path),
                ) from None
            raise
        return cell_id


@contextmanager
def read_only(path: str | os.PathLike, *, lock_timeout_s: float | None = None, sandbox: bool = False,
              require_current: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB connection to an existing results file.

    `sandbox=True` also disables file-system access and locks the configuration, so that a user query
    cannot write anywhere (no COPY TO, no ATTACH of another file). A schema version newer than this
    rtcbench is refused; `require_current=True` also refuses an older one (reports need the views).
    """
    path = Path(path)
    check_db_path(path, must_exist=True)
    timeout = lock_timeout_from_env() if lock_timeout_s is None else lock_timeout_s
    config = {"enable_external_access": False, "lock_configuration": True} if sandbox else {}
    conn = with_lock_retry(lambda: duckdb.connect(str(path), read_only=True, config=config), path, timeout)
    try:
        check_intact(lambda q: conn.execute(q).fetchall(), path)
        version = store_version(lambda q: conn.execute(q).fetchall(), str(path))
        if version == 0:
            raise UserError("not an rtcbench results database (no schema_version table)", path=str(path), field="--db")
        check_known_version(version, str(path))
        if require_current and version < schema.SCHEMA_VERSION:
            raise UserError(
                f"database schema version {version} is older than {schema.SCHEMA_VERSION}; any write "
                "(e.g. `rtcbench run`) upgrades it, or run `rtcbench migrate`",
                path=str(path), field="schema_version",
            )
        yield conn
    finally:
        conn.close()
