"""Outputs that cannot be written (a full disk, `ulimit -f`, a path under a file, /proc, a foreign database)
give a one-paragraph error naming the path and the option (exit code 2), never a traceback, and leave no
partial, empty or temporary file behind.

A full disk is simulated with RLIMIT_FSIZE (`ulimit -f`): a write past the limit fails with EFBIG, as a
full disk fails with ENOSPC, on the real code path that writes. Python ignores SIGXFSZ, so the process
sees the error instead of being killed."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from contextlib import contextmanager

import duckdb
import numpy as np
import pytest
from store_helpers import REPO_ROOT, cli_here, write_run
from store_scenarios import GATE_SETUPS, scenario_yaml

from rtcbench.store import Store, read_only


def cli_with_file_limit(limit_bytes: int, *args: str, cwd) -> subprocess.CompletedProcess:
    """`rtcbench ARGS` in a fresh interpreter that may write no file past `limit_bytes` (`ulimit -f`)."""
    code = ("import resource, sys; from rtcbench.cli.main import main; "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, resource.RLIM_INFINITY)); "
            "sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    env.pop("RTCBENCH_DB", None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@contextmanager
def file_size_limit(limit_bytes: int):
    """This process may write no file past `limit_bytes` inside the block (restored after it)."""
    saved = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, saved[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved)


def assert_one_paragraph(proc, *needles: str) -> None:
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err[-3000:]
    for needle in needles:
        assert needle in last, last


def leftovers(folder) -> list[str]:
    """Files under `folder` that a failed write must not leave: temporary or empty ones."""
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and (".tmp" in p.name or p.stat().st_size == 0))


def one_run_db(db_path) -> str:
    store = Store.open(db_path)
    return write_run(store, [
        {"level": "l", "method": "naive", "setup": "d2", "key": "k", "solved": np.arange(16) % 2 == 0},
        {"level": "l", "method": "rtc", "setup": "d2", "key": "k", "solved": np.arange(16) % 3 == 0},
    ])


# ------------------------------------------------------------------------------------------ full disk


def test_trace_import_on_a_full_disk_leaves_no_file(tmp_path):
    """Defect: a `.tmp` was left behind, with a traceback."""
    source = tmp_path / "lat.csv"
    source.write_text("latency_ms\n" + "\n".join(str(30 + i % 7) for i in range(400)) + "\n")
    out = tmp_path / "traces"
    out.mkdir()
    proc = cli_with_file_limit(512, "trace", "import", str(source), "--name", "t", "--out-dir", str(out), cwd=tmp_path)
    assert_one_paragraph(proc, str(out / "t.json"), "field '--out-dir'", "File too large (EFBIG)")
    assert list(out.iterdir()) == []


def test_report_on_a_full_disk_leaves_no_empty_figure(tmp_path):
    """Defect: a 0-byte PNG was left behind, with a traceback."""
    db = tmp_path / "r.duckdb"
    one_run_db(db)
    out = tmp_path / "report"
    proc = cli_with_file_limit(4096, "report", "--db", str(db), "--out", str(out), cwd=tmp_path)
    assert_one_paragraph(proc, str(out), "field '--out'", "File too large (EFBIG)")
    assert leftovers(tmp_path) == [] and not (out / "report.md").exists()


def test_store_write_on_a_full_disk_is_a_clear_error(tmp_path):
    """A transaction that cannot be written is a StoreWriteError naming the file, and writes nothing."""
    from rtcbench.store.db import StoreWriteError

    db = tmp_path / "r.duckdb"
    store = Store.open(db)
    with file_size_limit(0), pytest.raises(StoreWriteError) as info:
        one_run_db(db)
    assert str(db) in str(info.value) and info.value.field == "--db" and "File too large" in str(info.value)
    with read_only(db) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert store.version() >= 1


@pytest.mark.slow
def test_run_whose_cell_write_fails_is_a_clear_error(tiny_scenarios, tmp_path, jax_cache_dir, monkeypatch):
    """Defect: a failed database write during `rtcbench run` (disk full, `ulimit -f`) showed a SQLAlchemy
    traceback. The cell's real write runs under RLIMIT_FSIZE=0; the run is marked failed afterwards."""
    scenario = tmp_path / "one.yaml"
    scenario.write_text(scenario_yaml("store_full_disk", GATE_SETUPS.split("  - name: spiky")[0]))
    db = tmp_path / "r.duckdb"
    real_write_cell = Store.write_cell

    def write_cell_on_a_full_disk(self, *args, **kwargs):
        with file_size_limit(0):
            return real_write_cell(self, *args, **kwargs)

    monkeypatch.setattr(Store, "write_cell", write_cell_on_a_full_disk)
    proc = cli_here("run", str(scenario), "--db", str(db), "--compile-cache", str(jax_cache_dir))
    assert_one_paragraph(proc, str(db), "field '--db'", "File too large", "is marked failed", "--resume")
    with read_only(db) as conn:
        status, error = conn.execute("SELECT status, error FROM runs").fetchone()
        assert status == "failed" and "File too large" in error
        assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 0


# ------------------------------------------------------------------------------------------ bad output paths


@pytest.mark.parametrize("where", ["under_a_file", "a_file", "proc", "proc_child"])
def test_trace_import_out_dir_that_cannot_be_written(where, tmp_path):
    """Defect: `--out-dir` that is a file, under a file, /proc or in /proc raised a traceback."""
    source = tmp_path / "lat.csv"
    source.write_text("latency_ms\n30\n31\n")
    (tmp_path / "afile").write_text("x")
    out_dir = {"under_a_file": tmp_path / "afile" / "sub", "a_file": tmp_path / "afile", "proc": "/proc",
               "proc_child": "/proc/rtcbench-test-traces"}[where]
    proc = cli_here("trace", "import", str(source), "--name", "t", "--out-dir", str(out_dir))
    assert_one_paragraph(proc, str(out_dir), "field '--out-dir'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "lat.csv"]


@pytest.mark.parametrize("where", ["under_a_file", "proc_child"])
def test_report_out_that_cannot_be_written(where, tmp_path):
    """Defect: `report --out` in a place that cannot hold a folder raised a traceback."""
    db = tmp_path / "r.duckdb"
    one_run_db(db)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "report" if where == "under_a_file" else "/proc/rtcbench-test-report"
    proc = cli_here("report", "--db", str(db), "--out", str(out))
    assert_one_paragraph(proc, str(out), "field '--out'")


@pytest.mark.parametrize("where", ["under_a_file", "a_file", "proc_child"])
def test_run_compile_cache_that_cannot_be_written(where, tiny_scenarios, tmp_path):
    """Defect: `run --compile-cache` on a path that cannot be a writable folder raised a traceback; refused
    before anything is loaded or written."""
    (tmp_path / "afile").write_text("x")
    cache = {"under_a_file": tmp_path / "afile" / "cache", "a_file": tmp_path / "afile",
             "proc_child": "/proc/rtcbench-test-cache"}[where]
    db = tmp_path / "r.duckdb"
    proc = cli_here("run", str(tiny_scenarios / "gate.yaml"), "--db", str(db), "--compile-cache", str(cache))
    assert_one_paragraph(proc, str(cache), "field '--compile-cache'")
    assert not db.exists()


# ------------------------------------------------------------------------------------------ foreign files


@pytest.mark.parametrize("table_sql", [
    "CREATE TABLE schema_version (v VARCHAR); INSERT INTO schema_version VALUES ('x')",
    "CREATE TABLE schema_version (version VARCHAR); INSERT INTO schema_version VALUES ('3')",
    "CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version VALUES (3)",
    "CREATE TABLE schema_version (version INTEGER)",
])
def test_foreign_duckdb_with_a_schema_version_table(table_sql, tmp_path):
    """Defect: a DuckDB file that is not an rtcbench store but has a `schema_version` table failed with a SQL
    traceback (or was read as a store)."""
    db = tmp_path / "foreign.duckdb"
    conn = duckdb.connect(str(db))
    conn.execute(table_sql)
    conn.close()
    size = db.stat().st_size
    for args in (("migrate", "--db", str(db)), ("query", "--db", str(db), "SELECT 1"),
                 ("report", "--db", str(db), "--out", str(tmp_path / "report"))):
        proc = cli_here(*args)
        assert_one_paragraph(proc, str(db), "not an rtcbench results database")
    assert db.stat().st_size == size and not (tmp_path / "report").exists()
