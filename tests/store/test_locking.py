"""Bounded retry on DuckDB's file lock: a writer waits for another process, then gives up naming the file."""

import time

import pytest
from store_helpers import cell_row, cli, hold_lock, rollout_columns, write_run

from rtcbench.store import Store, StoreLockedError, read_only


def test_writer_waits_for_the_lock_then_writes(db_path):
    store = Store.open(db_path, lock_timeout_s=60)
    run_id = write_run(store, [], status="running")
    holder = hold_lock(db_path, 2.0)
    t0 = time.monotonic()
    store.write_cell(cell_row(run_id, level="s/x", method="naive", setup="u", key="k", solved=[1, 0, 1]),
                     rollout_columns([1, 0, 1]))
    waited = time.monotonic() - t0
    holder.wait(timeout=30)
    assert waited >= 1.0  # it really had to wait for the other process
    with read_only(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 3


def test_lock_timeout_fails_naming_the_file(db_path):
    store = Store.open(db_path)
    run_id = write_run(store, [], status="running")
    holder = hold_lock(db_path, 8.0)
    try:
        impatient = Store(db_path, lock_timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError) as info:
            impatient.write_cell(cell_row(run_id, level="s/x", method="naive", setup="u", key="k", solved=[1]),
                                 rollout_columns([1]))
        assert 1.0 <= time.monotonic() - t0 < 5.0
        assert str(db_path) in str(info.value) and "lock" in str(info.value)
        proc = cli("query", "SELECT 1", "--db", str(db_path), env={"RTCBENCH_DB_LOCK_TIMEOUT": "1"})
        assert proc.returncode == 2 and str(db_path) in proc.stderr and "lock" in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    with read_only(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 0
