"""Stepwise schema migrations driven by the ``schema_version`` table.

``migrate(conn)`` reads the file's version (0 for an empty file), refuses a version newer than this
rtcbench knows, and applies ``update_to_N`` for every N up to `SCHEMA_VERSION`, recording each step in
``schema_version``. It runs inside the caller's transaction, so a failed step leaves the file as it was.

History:
- v1: ``schema_version``, ``runs``, ``cells``, ``rollouts``.
- v2: ``inferences`` (per-inference delays of each cell's schedule) and the report views
  ``v_cells``, ``v_rollouts``, ``v_delays``.
- v3: ``runs`` columns ``device_count``, ``executor``, ``rollout_shards``, ``cell_filter`` (issue #15);
  NULL in runs made before (one device, local executor, one shard, every cell).
- v4: ``runs`` column ``overrides`` (``rtcbench run --set``, issue #17) and ``cells`` columns
  ``inference_ms_p10``, ``inference_ms_p90``; NULL in rows made before. The views are created again, as
  DuckDB refuses a view whose ``c.*`` no longer matches its table.
- v5: smoothness on the used action dimensions (issue #23). In ``cells`` and ``rollouts`` the old
  all-dimension columns ``jerk_{max,mean}_d{1,2}`` are renamed ``jerk_all_*`` and the used-dimension
  ``jerk_*`` columns are added, NULL in rows made before (never measured). Views created again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from rtcbench.errors import UserError
from rtcbench.store import schema


class SchemaVersionError(UserError):
    """The file's schema version is newer than this rtcbench, or the file is not an rtcbench store."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


TABLES_SQL = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
VERSION_COLUMN_SQL = ("SELECT data_type FROM information_schema.columns WHERE table_schema = 'main' "
                      "AND table_name = 'schema_version' AND column_name = 'version'")
# The tables each schema version has (beside schema_version); a file without them is not an rtcbench store.
TABLES_OF_VERSION = {1: ("runs", "cells", "rollouts"), 2: ("inferences",)}


def _not_a_store(path: str, why: str) -> SchemaVersionError:
    return SchemaVersionError(f"not an rtcbench results database: {why}; use a new file for rtcbench results",
                              path=path)


def store_version(execute: Callable[[str], list], path: str) -> int:
    """The schema version recorded in the file; 0 for a file with no tables at all.

    A file that is not an rtcbench store is refused before any query reads it as one: tables but no
    ``schema_version``, a ``schema_version`` without an integer ``version`` column or without rows, or a
    version whose tables are missing (a foreign DuckDB file that happens to have a ``schema_version``
    table would otherwise fail with a SQL error in the middle of a migration). ``execute`` runs one SQL
    statement and returns its rows, on a SQLAlchemy or a raw DuckDB connection."""
    names = {str(r[0]) for r in execute(TABLES_SQL)}
    if "schema_version" not in names:
        if names:
            raise _not_a_store(path, f"it has tables ({', '.join(sorted(names)[:5])}) but no schema_version table")
        return 0
    column = execute(VERSION_COLUMN_SQL)
    if not column:
        raise _not_a_store(path, "its schema_version table has no 'version' column")
    if "INT" not in str(column[0][0]).upper():
        raise _not_a_store(path, f"its schema_version table's 'version' column is {column[0][0]}, not an integer")
    version = execute("SELECT max(version) FROM schema_version")[0][0]
    if version is None or int(version) < 1:
        raise _not_a_store(path, "its schema_version table is empty" if version is None
                           else f"its schema_version table says version {version}, which no rtcbench wrote")
    version = int(version)
    missing = [t for v, tables in TABLES_OF_VERSION.items() if v <= version for t in tables if t not in names]
    if missing:
        raise _not_a_store(path, f"its schema_version says version {version} but it has no table "
                           f"{', '.join(missing)}")
    return version


def current_version(conn: sa.Connection, path: str) -> int:
    """The schema version recorded in the file; 0 for a file with no tables at all (`store_version`)."""
    return store_version(lambda sql: conn.execute(sa.text(sql)).fetchall(), path)


def check_known_version(version: int, path: str) -> None:
    if version > schema.SCHEMA_VERSION:
        from rtcbench import __version__

        raise SchemaVersionError(
            f"database schema version {version} is newer than this rtcbench ({__version__}) supports "
            f"(up to {schema.SCHEMA_VERSION}); upgrade rtcbench to read or write this file",
            path=path,
            field="schema_version",
        )


V3_RUN_COLUMNS = (("device_count", "INTEGER"), ("executor", "VARCHAR"), ("rollout_shards", "INTEGER"),
                  ("cell_filter", "VARCHAR"))


V4_RUN_COLUMNS = (("overrides", "VARCHAR"),)
V4_CELL_COLUMNS = (("inference_ms_p10", "DOUBLE"), ("inference_ms_p90", "DOUBLE"))


JERK_NAMES = ("jerk_max_d1", "jerk_mean_d1", "jerk_max_d2", "jerk_mean_d2")
V5_RENAMES = {f"jerk_all_{name[5:]}": name for name in JERK_NAMES}  # today's name -> the name up to v4
V5_JERK_COLUMNS = tuple((name, "DOUBLE") for name in JERK_NAMES)


def _v1_table(table: sa.Table, later: tuple) -> sa.Table:
    """`table` as v1 had it: today's columns less those that later steps add, under their v1 names, with
    its constraints."""
    names = {name for name, _ in later}
    columns = []
    for c in table.columns:
        if c.name in names:
            continue
        col = c._copy()
        col.name = col.key = V5_RENAMES.get(c.name, c.name)
        columns.append(col)
    constraints = [sa.CheckConstraint(c.sqltext, name=c.name) for c in table.constraints
                   if isinstance(c, sa.CheckConstraint)]
    constraints += [sa.UniqueConstraint(*[col.name for col in c.columns], name=c.name) for c in table.constraints
                    if isinstance(c, sa.UniqueConstraint)]
    return sa.Table(table.name, sa.MetaData(), *columns, *constraints)


def update_to_1(conn: sa.Connection) -> None:
    for table in (schema.schema_version, _v1_table(schema.runs, V3_RUN_COLUMNS + V4_RUN_COLUMNS),
                  _v1_table(schema.cells, V4_CELL_COLUMNS + V5_JERK_COLUMNS),
                  _v1_table(schema.rollouts, V5_JERK_COLUMNS)):
        table.create(conn)


def update_to_2(conn: sa.Connection) -> None:
    schema.inferences.create(conn)
    for name, select in schema.VIEWS_V2:
        conn.execute(sa.text(f"CREATE VIEW {name} AS {select}"))


def update_to_3(conn: sa.Connection) -> None:
    for name, sql_type in V3_RUN_COLUMNS:
        conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}"))


def update_to_4(conn: sa.Connection) -> None:
    for name, _ in schema.VIEWS_V2:
        conn.execute(sa.text(f"DROP VIEW IF EXISTS {name}"))
    for table, columns in (("runs", V4_RUN_COLUMNS), ("cells", V4_CELL_COLUMNS)):
        for name, sql_type in columns:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))
    for name, select in schema.VIEWS_V2:
        conn.execute(sa.text(f"CREATE VIEW {name} AS {select}"))


def update_to_5(conn: sa.Connection) -> None:
    for name, _ in schema.VIEWS_V2:
        conn.execute(sa.text(f"DROP VIEW IF EXISTS {name}"))
    for table in (schema.cells, schema.rollouts):
        for new, old in V5_RENAMES.items():
            conn.execute(sa.text(f"ALTER TABLE {table.name} RENAME COLUMN {old} TO {new}"))
        for column in table.columns:  # appended in the order the current schema lists them
            if column.name in JERK_NAMES:
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} DOUBLE"))
    for name, select in schema.VIEWS_V2:
        conn.execute(sa.text(f"CREATE VIEW {name} AS {select}"))


UPDATES: dict[int, Callable[[sa.Connection], None]] = {1: update_to_1, 2: update_to_2, 3: update_to_3,
                                                       4: update_to_4, 5: update_to_5}
assert sorted(UPDATES) == list(range(1, schema.SCHEMA_VERSION + 1)), "one update_to_N per schema version"


def migrate(conn: sa.Connection, path: str, target: int = schema.SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the file to `target` (default: the current version) -> (version before, version after)."""
    from rtcbench import __version__

    before = current_version(conn, path)
    check_known_version(before, path)
    for n in range(before + 1, target + 1):
        UPDATES[n](conn)
        conn.execute(sa.insert(schema.schema_version).values(version=n, applied_at=_utcnow(), rtcbench_version=__version__))
    return before, max(before, target)
