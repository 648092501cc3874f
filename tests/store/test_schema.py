"""Schema, migrations and clear errors for bad files, paths and versions (real DuckDB files)."""

from pathlib import Path

import duckdb
import numpy as np
import pytest
import sqlalchemy as sa
from store_helpers import cli, write_run

from rtcbench.errors import UserError
from rtcbench.store import SCHEMA_VERSION, SchemaVersionError, Store, read_only
from rtcbench.store import schema as S

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "schema_v1"

FIXED_CELL_COLUMNS = (
    "run_id config_hash scenario level method setup n_rollouts solve_rate solve_ci_low solve_ci_high return_mean "
    "length_mean d_p50 d_p95 d_p99 d_max violation_rate stall_frac forecast_miss_rate mean_exec_horizon "
    "jerk_max_d1 jerk_max_d2 nfe_per_inference vjp_per_inference nfe_per_env_step inference_ms env_steps_per_s"
).split()


def _columns(conn, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table]).fetchall()
    return dict(rows)


def _expected_columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def test_fresh_file_has_current_schema_and_fixed_columns(db_path):
    Store.open(db_path)
    with read_only(db_path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        cells = _columns(conn, "cells")
        for name in FIXED_CELL_COLUMNS:
            assert name in cells, name
        assert cells["solve_rate"] == "DOUBLE"
        for table in (S.runs, S.cells, S.rollouts, S.inferences):
            assert list(_columns(conn, table.name)) == _expected_columns(table)
        views = {r[0] for r in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {"v_cells", "v_rollouts", "v_delays"} <= views


def _build_v1_file(path: Path) -> None:
    conn = duckdb.connect(str(path))
    conn.execute((FIXTURE_V1 / "schema.sql").read_text())
    conn.execute((FIXTURE_V1 / "load.sql").read_text().replace("{FIXTURE_DIR}", str(FIXTURE_V1)))
    conn.close()


def test_v1_fixture_migrates_to_current_and_keeps_rows(db_path):
    _build_v1_file(db_path)
    with read_only(db_path) as conn:  # an old version is readable as is
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 1
        assert "inferences" not in {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    with pytest.raises(UserError, match="older than"):
        with read_only(db_path, require_current=True):
            pass
    before, after = Store(db_path).migrate()
    assert (before, after) == (1, SCHEMA_VERSION)
    with read_only(db_path, require_current=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        for table in (S.runs, S.cells, S.rollouts, S.inferences):
            assert list(_columns(conn, table.name)) == _expected_columns(table)
        rows = conn.execute("SELECT method, solve_rate, n_rollouts FROM v_cells ORDER BY method").fetchall()
        assert rows == [("naive", 0.75, 4), ("rtc_exp", 1.0, 4)]
        assert conn.execute("SELECT count(*), sum(solved::INT) FROM v_rollouts").fetchone() == (8, 7)
        assert conn.execute("SELECT count(*) FROM v_delays").fetchone()[0] == 0  # v1 kept no per-inference delays
    # the migrated file takes new cells, with per-inference rows, and keeps the old run
    store = Store.open(db_path)
    run_id = write_run(store, [{"level": "s/x", "method": "naive", "setup": "u", "key": "k", "solved": [1, 0]}])
    with read_only(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
        assert conn.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()[0] == "complete"


def test_stepwise_migration_from_each_version(db_path):
    store = Store(db_path)
    assert store.migrate(target=1) == (0, 1)
    assert store.version() == 1
    assert store.migrate() == (1, SCHEMA_VERSION)
    assert store.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)


def _plant_newer_version(path: Path, version: int) -> None:
    conn = duckdb.connect(str(path))
    conn.execute("INSERT INTO schema_version VALUES (?, now()::TIMESTAMP, '99.0')", [version])
    conn.close()


def test_newer_schema_version_is_refused_with_a_clear_error(db_path):
    Store.open(db_path)
    _plant_newer_version(db_path, SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        Store.open(db_path)
    with pytest.raises(SchemaVersionError, match="newer"):
        with read_only(db_path):
            pass
    proc = cli("query", "SELECT 1", "--db", str(db_path))
    assert proc.returncode == 2
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in proc.stderr and str(db_path) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_database_paths_give_clear_errors(tmp_path):
    missing_dir = tmp_path / "no_such_dir" / "r.duckdb"
    with pytest.raises(UserError, match="does not exist"):
        Store.open(missing_dir)
    assert not missing_dir.parent.exists()
    with pytest.raises(UserError, match="is a directory"):
        Store.open(tmp_path)
    garbage = tmp_path / "notes.duckdb"
    garbage.write_text("this is not a database\n" * 100)
    with pytest.raises(UserError, match="cannot open the database file"):
        Store.open(garbage)
    assert garbage.read_text().startswith("this is not a database")
    other = tmp_path / "other.duckdb"
    conn = duckdb.connect(str(other))
    conn.execute("CREATE TABLE measurements (x INT)")
    conn.close()
    with pytest.raises(SchemaVersionError, match="not an rtcbench results database"):
        Store.open(other)

    for args in (("query", "SELECT 1"), ("report",), ("compare", "--baseline", "a", "--candidate", "b")):
        proc = cli(*args, "--db", str(tmp_path / "absent.duckdb"))
        assert proc.returncode == (4 if args[0] == "compare" else 2), (args, proc.stderr)
        assert "absent.duckdb" in proc.stderr and "no such database file" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "absent.duckdb").exists()
    proc = cli("query", "SELECT 1", env={"RTCBENCH_DB": str(tmp_path / "via_env.duckdb")})
    assert proc.returncode == 2 and "via_env.duckdb" in proc.stderr


def _run_file(path: Path) -> Path:
    store = Store.open(path)
    write_run(store, [{"level": "l", "method": m, "setup": "s", "key": m, "solved": np.arange(512) % 3 == 0}
                      for m in ("naive", "rtc", "bid")])
    return path


def test_duckdb_file_layout_matches_the_truncation_check(tmp_path):
    """The check's layout is DuckDB's: a whole file holds the headers and every block its data uses, and
    cutting its last used block is caught (the bound is tight, not only safe)."""
    from rtcbench.store.db import DUCKDB_HEADER_BYTES, check_intact

    path = _run_file(tmp_path / "r.duckdb")
    conn = duckdb.connect(str(path), read_only=True)
    block_size = conn.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    check_intact(lambda q: conn.execute(q).fetchall(), path)  # a whole file passes
    conn.close()
    size = path.stat().st_size
    assert (size - DUCKDB_HEADER_BYTES) % block_size == 0 and size > DUCKDB_HEADER_BYTES + 2 * block_size
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(path.read_bytes()[: size - block_size])  # one block short
    conn = duckdb.connect(str(cut), read_only=True)
    try:
        with pytest.raises(UserError, match="truncated"):
            check_intact(lambda q: conn.execute(q).fetchall(), cut)
    finally:
        conn.close()


def test_truncated_file_is_refused_before_any_work(tmp_path):
    path = _run_file(tmp_path / "r.duckdb")
    data = path.read_bytes()
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        Store.open(cut)
    with pytest.raises(UserError, match="truncated"), read_only(cut):
        pass
    for args in (("report", "--out", str(tmp_path / "rep")), ("migrate",), ("query", "SELECT 1"),
                 ("compare", "--baseline", "a", "--candidate", "b")):
        proc = cli(*args, "--db", str(cut))
        assert proc.returncode == (4 if args[0] == "compare" else 2), (args, proc.stdout, proc.stderr)
        assert "cut.duckdb" in proc.stderr and "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert cut.read_bytes() == data[: len(data) // 2]  # nothing written
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("name", [":memory:", "r.duckdb?threads=1"])
def test_db_paths_that_are_not_files_are_refused(name, tmp_path):
    target = name if name.startswith(":") else str(tmp_path / name)
    with pytest.raises(UserError, match="in-memory|URL parameters"):
        Store.open(target)
    proc = cli("run", "bench/scenarios/longtail_5pct.yaml", "--db", target, "--rollouts", "2")
    assert proc.returncode == 2 and "--db" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_write_cell_is_all_or_nothing(db_path):
    store = Store.open(db_path)
    run_id = write_run(store, [{"level": "s/x", "method": "naive", "setup": "u", "key": "k", "solved": [1, 1, 0]}],
                       status="running")
    from store_helpers import cell_row, rollout_columns

    bad_rollouts = rollout_columns([1, 0, 1])
    bad_rollouts["episode_length"] = np.array(["x", "y", "z"])  # not castable to INTEGER: fails inside the tx
    with pytest.raises(Exception):  # noqa: B017 - DuckDB's conversion error type is an implementation detail
        store.write_cell(cell_row(run_id, level="s/x", method="rtc", setup="u", key="k2", solved=[1, 0, 1]), bad_rollouts)
    with read_only(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 3
    with pytest.raises(UserError, match="already stored"):
        store.write_cell(cell_row(run_id, level="s/x", method="naive", setup="u", key="k", solved=[1, 1, 0]),
                         rollout_columns([1, 1, 0]))
