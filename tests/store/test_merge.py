"""`rtcbench merge`: results files written on several machines joined into one (real DuckDB files)."""

import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import duckdb
import numpy as np
import pytest
from store_helpers import cell_row, cli, hold_lock, rollout_columns, run_main

from rtcbench.errors import UserError
from rtcbench.store import SCHEMA_VERSION, SchemaVersionError, Store, StoreLockedError, read_only
from rtcbench.store.merge import merge_files

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "schema_v1"
TABLES = ("runs", "cells", "rollouts", "inferences")
LATER_RUN_COLUMNS = ("device_count", "executor", "rollout_shards", "cell_filter", "overrides")  # v3, v4


def _build_v1_file(path: Path) -> None:
    """A schema version 1 file from the text fixture (as in test_schema.py)."""
    conn = duckdb.connect(str(path))
    conn.execute((FIXTURE_V1 / "schema.sql").read_text())
    conn.execute((FIXTURE_V1 / "load.sql").read_text().replace("{FIXTURE_DIR}", str(FIXTURE_V1)))
    conn.close()


def _write(path: Path, methods: list[str], *, run_id: str | None = None, config_hash: str = "cfg",
           status: str = "complete", level: str = "s/x", n: int = 4, **run_columns) -> str:
    """A run with one cell per method (rollouts and per-inference rows) written through the store API."""
    store = Store.open(path)
    row = {"scenario": "merge_test", "config_hash": config_hash, "n_cells_planned": len(methods), "device_count": 2,
           "executor": "local", "rollout_shards": 1} | run_columns
    if run_id is not None:
        row["run_id"] = run_id
    run_id = store.get_run(run_id)["run_id"] if run_id and store.get_run(run_id) else store.create_run(row)
    rng = np.random.default_rng(zlib.crc32(f"{path.name} {run_id} {methods}".encode()))
    for method in methods:
        solved = rng.random(n) < 0.6
        m = 3 * n
        inferences = {"rollout": np.repeat(np.arange(n), 3), "k": np.tile(np.arange(3), n), "tau": np.arange(m) * 4,
                      "d": rng.integers(0, 5, m), "d_control": rng.integers(0, 5, m), "dhat": np.full(m, 2),
                      "s": np.full(m, 2)}
        store.write_cell(cell_row(run_id, level=level, method=method, setup="u", key=method, solved=solved),
                         rollout_columns(solved, rng.random(n), rng.random(n)), inferences)
    if status != "running":
        store.finish_run(run_id, status=status, wall_s=1.0, compile_s=0.5)
    return run_id


def _dump(path: Path) -> dict[str, list[tuple]]:
    """Every row of the four tables, sorted (a table the file lacks is empty)."""
    with read_only(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) if t in tables else []
                for t in TABLES}


def _counts(path: Path) -> dict[str, int]:
    return {t: len(rows) for t, rows in _dump(path).items()}


def test_two_files_with_different_runs_merge_into_a_new_file(tmp_path, capsys):
    a, b, c = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    _write(a, ["naive", "rtc"])
    _write(a, ["bid"], status="failed")
    _write(b, ["naive", "rtc", "bid"], level="s/y", cell_filter="level=s/y")
    before_a, before_b = a.read_bytes(), b.read_bytes()
    code, out, err = run_main(capsys, "merge", str(a), str(b), "--into", str(c))
    assert code == 0, err
    assert f"{c} (created, schema version {SCHEMA_VERSION})" in out
    assert "2 runs added, 0 runs extended, 3 cells added (12 rollouts, 36 inferences), 0 cells skipped" in out
    assert "1 run added, 0 runs extended, 3 cells added" in out and f"{c}: 3 runs, 6 cells" in out
    assert a.read_bytes() == before_a and b.read_bytes() == before_b  # sources are only read
    da, db, dc = _dump(a), _dump(b), _dump(c)
    for table in TABLES:
        assert len(dc[table]) == len(da[table]) + len(db[table]) > 0, table
        assert dc[table] == sorted(da[table] + db[table], key=repr), table  # every column, every row
    with read_only(c, require_current=True) as conn:  # the views of the merged file see it all
        assert conn.execute("SELECT count(*) FROM v_cells").fetchone()[0] == 6
        assert conn.execute("SELECT count(*) FROM v_delays").fetchone()[0] == 6 * 4 * 2
        assert conn.execute("SELECT cell_filter FROM runs WHERE cell_filter IS NOT NULL").fetchall() == [("level=s/y",)]

    # merging again adds nothing, and says so
    code, out, _ = run_main(capsys, "merge", str(a), str(b), "--into", str(c))
    assert code == 0
    assert "0 runs added, 0 runs extended, 0 cells added (0 rollouts, 0 inferences), 3 cells skipped" in out
    assert "nothing new" in out
    assert _dump(c) == dc


def test_a_run_split_across_two_files_is_joined(tmp_path):
    """Same run id on two machines (a copied file resumed elsewhere): one run row, the cells of both."""
    a, b, c = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    run_id = _write(a, ["naive", "rtc"], status="running", n_cells_planned=4)
    _write(b, ["bid", "soft"], run_id=run_id, n_cells_planned=4)  # complete on b
    summary = merge_files([a, b], c)
    first, second = summary.sources
    assert (first.runs_added, first.cells_added, second.runs_added, second.runs_extended, second.cells_added) == (
        1, 2, 0, 1, 2)
    assert second.runs_completed == 1 and any("marked complete" in note for note in second.notes)
    with read_only(c) as conn:
        assert conn.execute("SELECT count(*), min(status), min(wall_s) FROM runs").fetchone() == (1, "complete", 1.0)
        methods = conn.execute("SELECT method FROM cells WHERE run_id = ? ORDER BY method", [run_id]).fetchall()
        assert [m for (m,) in methods] == ["bid", "naive", "rtc", "soft"]
        assert conn.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 4 * 4
        assert conn.execute("SELECT count(*) FROM inferences").fetchone()[0] == 4 * 4 * 3

    # the same cell computed in both files (another cell id): the target's is kept, and a note says so
    _write(b, ["naive"], run_id=run_id)
    again = merge_files([b], c).sources[0]
    assert (again.cells_added, again.cells_skipped) == (0, 3)
    assert any("computed in both files" in note for note in again.notes)
    assert _counts(c)["cells"] == 4


def test_a_run_id_with_another_config_hash_is_refused_and_the_target_is_unchanged(tmp_path, capsys):
    a, b, c = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    run_id = _write(a, ["naive"], config_hash="cfg-one")
    _write(b, ["rtc"], run_id=run_id, config_hash="cfg-two")
    fresh = tmp_path / "fresh.duckdb"
    code, _, err = run_main(capsys, "merge", str(a), str(b), "--into", str(fresh))
    assert code == 2
    assert f"{b}: field 'config_hash'" in err and run_id in err and "two different runs share one id" in err
    assert f"added from {a} in this merge" in err
    assert not fresh.exists()  # a failed merge into a new file leaves nothing behind

    merge_files([a], c)
    other = tmp_path / "other.duckdb"
    _write(other, ["bid"])  # a good run, merged before the conflict in the same transaction
    before = _dump(c)
    code, _, err = run_main(capsys, "merge", str(other), str(b), "--into", str(c))
    assert code == 2 and "config hash" in err
    assert _dump(c) == before  # all or nothing: the good run of other.duckdb was not kept either


def test_a_cell_id_with_other_content_is_refused(tmp_path):
    a, c = tmp_path / "a.duckdb", tmp_path / "c.duckdb"
    _write(a, ["naive", "rtc"])
    merge_files([a], c)
    altered = tmp_path / "altered.duckdb"
    shutil.copy(a, altered)
    conn = duckdb.connect(str(altered))
    conn.execute("UPDATE cells SET solve_rate = 0.123 WHERE method = 'rtc'")
    conn.close()
    before = _dump(c)
    with pytest.raises(UserError, match=r"different content \(columns solve_rate\)"):
        merge_files([altered], c)
    assert _dump(c) == before


def test_a_v1_source_merges_with_null_for_the_newer_columns(tmp_path):
    v1, b, c = tmp_path / "v1.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    _build_v1_file(v1)
    v1_rows, v1_bytes = _dump(v1), v1.read_bytes()
    _write(b, ["naive"])
    summary = merge_files([v1, b], c)
    assert [s.version for s in summary.sources] == [1, SCHEMA_VERSION]
    assert (summary.sources[0].runs_added, summary.sources[0].cells_added, summary.sources[0].inferences_added) == (
        1, 2, 0)
    with read_only(c, require_current=True) as conn:
        cols = ", ".join(LATER_RUN_COLUMNS)
        assert conn.execute(f"SELECT {cols} FROM runs WHERE run_id = '20261120-120000-v1fix'").fetchone() == (
            None, None, None, None, None)
        assert conn.execute(f"SELECT {cols} FROM runs WHERE run_id <> '20261120-120000-v1fix'").fetchone() == (
            2, "local", 1, None, None)
        rows = conn.execute("SELECT method, solve_rate, n_rollouts FROM v_cells WHERE scenario = 'v1_fixture' "
                            "ORDER BY method").fetchall()
        assert rows == [("naive", 0.75, 4), ("rtc_exp", 1.0, 4)]
        old_runs = conn.execute(f"SELECT * EXCLUDE ({', '.join(LATER_RUN_COLUMNS)}) FROM runs "
                                "WHERE run_id = '20261120-120000-v1fix'").fetchall()
    assert old_runs == v1_rows["runs"]
    merged = _dump(c)
    for table in ("cells", "rollouts"):  # the v1 values, then NULL in the columns later versions added
        width = len(v1_rows[table][0])
        old_rows = [r for r in merged[table] if r[:width] in v1_rows[table]]
        assert [r[:width] for r in old_rows] == v1_rows[table]
        assert all(v is None for r in old_rows for v in r[width:])
    assert v1.read_bytes() == v1_bytes


def test_an_older_target_is_migrated_in_the_same_transaction(tmp_path):
    target, b = tmp_path / "old.duckdb", tmp_path / "b.duckdb"
    _build_v1_file(target)
    _write(b, ["naive"])
    summary = merge_files([b], target)
    assert (summary.created, summary.version_before, summary.version_after) == (False, 1, SCHEMA_VERSION)
    assert _counts(target) == {"runs": 2, "cells": 3, "rollouts": 8 + 4, "inferences": 12}

    # a refused merge into an old target leaves it at its old version
    old = tmp_path / "old2.duckdb"
    _build_v1_file(old)
    clash = tmp_path / "clash.duckdb"
    _write(clash, ["naive"])
    conn = duckdb.connect(str(clash))
    conn.execute("UPDATE runs SET run_id = '20261120-120000-v1fix', config_hash = 'other'")
    conn.execute("UPDATE cells SET run_id = '20261120-120000-v1fix'")
    conn.close()
    with pytest.raises(UserError, match="config hash"):
        merge_files([clash], old)
    assert Store(old).version() == 1


def test_bad_sources_are_refused_before_anything_is_written(tmp_path, capsys):
    good, c = tmp_path / "good.duckdb", tmp_path / "c.duckdb"
    _write(good, ["naive", "rtc", "bid"], n=512)
    merge_files([good], c)
    before = c.read_bytes()

    newer = tmp_path / "newer.duckdb"
    _write(newer, ["naive"])
    conn = duckdb.connect(str(newer))
    conn.execute("INSERT INTO schema_version VALUES (?, now()::TIMESTAMP, '99.0')", [SCHEMA_VERSION + 1])
    conn.close()
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        merge_files([good, newer], tmp_path / "new.duckdb")

    data = good.read_bytes()
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(data[: len(data) // 2])
    notes = tmp_path / "notes.duckdb"
    notes.write_text("not a database\n" * 100)
    foreign = tmp_path / "foreign.duckdb"
    conn = duckdb.connect(str(foreign))
    conn.execute("CREATE TABLE measurements (x INT)")
    conn.close()
    cases = [(newer, "is newer than this rtcbench"), (cut, "truncated"), (tmp_path / "absent.duckdb", "no such database"),
             (notes, "cannot open the database file"), (foreign, "not an rtcbench results database"),
             (tmp_path, "is a directory")]
    for bad, message in cases:
        for into in (c, tmp_path / "new.duckdb"):
            code, out, err = run_main(capsys, "merge", str(good), str(bad), "--into", str(into))
            assert code == 2, (bad, out, err)
            assert str(bad) in err and message in err, (bad, err)
    assert c.read_bytes() == before  # the existing target was not even opened for writing
    assert not (tmp_path / "new.duckdb").exists()
    assert cut.read_bytes() == data[: len(data) // 2]


def test_a_source_equal_to_the_target_or_given_twice_is_refused(tmp_path, capsys):
    a = tmp_path / "a.duckdb"
    _write(a, ["naive"])
    before = a.read_bytes()
    link = tmp_path / "link.duckdb"
    link.symlink_to(a)
    for args in ((str(a), "--into", str(a)), (str(link), "--into", str(a)),
                 (str(tmp_path / "." / "a.duckdb"), "--into", str(a))):
        code, _, err = run_main(capsys, "merge", *args)
        assert code == 2 and "is also the --into file" in err, err
    code, _, err = run_main(capsys, "merge", str(a), str(link), "--into", str(tmp_path / "c.duckdb"))
    assert code == 2 and "is given twice" in err
    assert a.read_bytes() == before and not (tmp_path / "c.duckdb").exists()
    code, _, err = run_main(capsys, "merge", str(a), "--into", str(tmp_path / "no_dir" / "c.duckdb"))
    assert code == 2 and "field '--into'" in err and "does not exist" in err


def test_an_unknown_column_in_a_source_is_refused_not_dropped(tmp_path):
    a = tmp_path / "a.duckdb"
    _write(a, ["naive"])
    conn = duckdb.connect(str(a))
    conn.execute("ALTER TABLE cells ADD COLUMN private_note VARCHAR")
    conn.close()
    with pytest.raises(UserError, match="private_note"):
        merge_files([a], tmp_path / "c.duckdb")
    assert not (tmp_path / "c.duckdb").exists()


def test_merge_waits_for_a_writer_holding_the_target(tmp_path):
    a, c = tmp_path / "a.duckdb", tmp_path / "c.duckdb"
    _write(a, ["naive"])
    _write(c, ["rtc"])
    holder = hold_lock(c, 2)
    try:
        t0 = time.monotonic()
        summary = merge_files([a], c, lock_timeout_s=60)
        assert time.monotonic() - t0 >= 1.0  # it really waited for the other process
        assert summary.sources[0].cells_added == 1
        holder.wait(timeout=30)
        holder = hold_lock(a, 8)
        with pytest.raises(StoreLockedError) as info:  # a source being written is waited for too, then named
            merge_files([a], tmp_path / "d.duckdb", lock_timeout_s=1)
        assert str(a) in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    assert _counts(c)["cells"] == 2 and not (tmp_path / "d.duckdb").exists()


def test_merge_through_real_processes(tmp_path):
    a, b, c = tmp_path / "a.duckdb", tmp_path / "b.duckdb", tmp_path / "c.duckdb"
    run_id = _write(a, ["naive"], config_hash="cfg-one")
    _write(b, ["rtc"], run_id=run_id, config_hash="cfg-two")
    proc = cli("merge", str(a), "--into", str(c))
    assert proc.returncode == 0, proc.stderr
    assert "1 run added" in proc.stdout and f"{c}: 1 run, 1 cell" in proc.stdout
    entry = Path(sys.executable).parent / "rtcbench"
    command = [str(entry)] if entry.exists() else [sys.executable, "-m", "rtcbench.cli.main"]
    before = _dump(c)
    proc = subprocess.run([*command, "merge", str(b), "--into", str(c)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert str(b) in proc.stderr and "two different runs share one id" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _dump(c) == before
