"""`rtcbench.results` (runs, cells, rollouts and delays as DataFrames), `rtcbench export` (one run as Parquet)
and the bounds of `rtcbench query` (--out with --force, --max-rows, --timeout-s, CSV lists and NULL), on runs
written through the store API: no JAX."""

import csv
import io
import json
import os
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from store_helpers import run_main, write_run

import rtcbench
from rtcbench import results
from rtcbench.errors import UserError
from rtcbench.store import SCHEMA_VERSION, Store

LEVEL = "s/h4_thrust_aim"
N = 6  # rollouts per cell
K = 4  # inferences per rollout (k = 0 synchronous)
EXPORTED = ("runs", "cells", "rollouts", "inferences", "v_cells", "v_rollouts", "v_delays")


def _inferences(d_control: list[int]) -> dict[str, np.ndarray]:
    """K inferences for each of N rollouts; inference k >= 1 of every rollout has delay d_control[k - 1]."""
    rollout = np.repeat(np.arange(N), K)
    k = np.tile(np.arange(K), N)
    d = np.tile(np.array([0, *d_control]), N)
    return {"rollout": rollout, "k": k, "tau": k * 3, "d": d, "d_control": d, "dhat": np.full(N * K, 2),
            "s": np.full(N * K, 3)}


SOLVED_NAIVE = np.array([1, 0, 1, 1, 0, 0], bool)
SOLVED_RTC = np.array([1, 1, 1, 0, 1, 1], bool)


@pytest.fixture
def two_runs(db_path) -> tuple[str, str]:
    """Run A: naive and rtc on one setup, with inferences; run B (newer): one naive cell."""
    store = Store.open(db_path)
    first = write_run(store, [
        {"level": LEVEL, "method": "naive", "setup": "longtail", "key": "k-naive", "solved": SOLVED_NAIVE,
         "seeds": {"env": 1, "delay": 2}, "inferences": _inferences([1, 6, 2])},  # 6 > H - s = 5: a violation
        {"level": LEVEL, "method": "rtc", "setup": "longtail", "key": "k-rtc", "solved": SOLVED_RTC,
         "seeds": {"env": 1, "delay": 2}, "inferences": _inferences([2, 3, 1])},
    ])
    second = write_run(store, [{"level": LEVEL, "method": "naive", "setup": "fixed2", "key": "k-naive2",
                                "solved": np.ones(3, bool)}], status="failed")
    return first, second


def _unique_prefix(run_id: str, other: str) -> str:
    return run_id[:len(os.path.commonprefix([run_id, other])) + 1]


def test_the_api_returns_what_the_store_holds(db_path, two_runs):
    first, second = two_runs
    with results.open(db_path) as res:
        assert res.schema_version == SCHEMA_VERSION
        runs = res.runs()
        assert list(runs["run_id"]) == [first, second] and list(runs["status"]) == ["complete", "failed"]

        cells = res.cells(first)
        assert list(cells["method"]) == ["naive", "rtc"] and set(cells["run_id"]) == {first}
        assert cells["solve_rate"].tolist() == pytest.approx([SOLVED_NAIVE.mean(), SOLVED_RTC.mean()])
        assert list(cells["run_status"]) == ["complete", "complete"]  # v_cells: the run's columns come along
        assert isinstance(cells["cell_config"].iat[0], str)
        assert res.cells(first, parse_config=True)["cell_config"].iat[0]["seeds"] == {"env": 1, "delay": 2}
        assert len(res.cells()) == 3 and list(res.cells()["run_id"]) == [first, first, second]

        rollouts = res.rollouts(first)
        assert len(rollouts) == 2 * N and list(rollouts["level"].unique()) == [LEVEL]
        naive = res.rollouts(first, cell=f"{LEVEL}/rtc/longtail")
        assert naive["rollout"].tolist() == list(range(N)) and naive["solved"].tolist() == SOLVED_RTC.tolist()
        by_id = res.rollouts(cell=cells["cell_id"].iat[0])
        assert by_id["solved"].tolist() == SOLVED_NAIVE.tolist()
        assert len(res.rollouts(cell=f"{LEVEL}/naive/fixed2")) == 3  # every run: the second run's cell
        assert len(res.rollouts()) == 2 * N + 3

        delays = res.delays(first)
        assert len(delays) == 2 * N * (K - 1) and (delays["k"] >= 1).all()  # k = 0 is not a delay
        naive_delays = delays[delays["method"] == "naive"]
        assert naive_delays["violation"].sum() == N  # d_control 6 > chunk_size 8 - s 3, once per rollout
        assert sorted(naive_delays["d"].unique()) == [1, 2, 6]
        assert res.delays(second).empty and list(res.delays(second).columns) == list(delays.columns)


def test_runs_by_prefix_and_latest_and_errors(db_path, two_runs):
    first, second = two_runs
    with results.open(db_path) as res:
        prefix = _unique_prefix(first, second)
        assert prefix != first
        pd.testing.assert_frame_equal(res.cells(prefix), res.cells(first))
        assert res.run_id("latest") == second and set(res.rollouts("latest")["run_id"]) == {second}
        shared = os.path.commonprefix([first, second])
        with pytest.raises(UserError, match="give more of it") as err:
            res.cells(shared)
        assert err.value.field == "run"
        with pytest.raises(UserError, match="no run 'nope'"):
            res.delays("nope")
        with pytest.raises(UserError, match="no cell") as err:
            res.rollouts(first, cell=f"{LEVEL}/naive/fixed2")  # that cell is in the other run
        assert err.value.field == "cell" and f"{LEVEL}/naive/longtail" in err.value.message
    with pytest.raises(UserError, match="no such database file"):
        results.open(db_path.parent / "missing.duckdb")


def test_export_writes_the_api_frames_as_parquet(db_path, two_runs, tmp_path, capsys):
    first, second = two_runs
    out = tmp_path / "export" / "a"  # parents are created
    code, stdout, err = run_main(capsys, "export", _unique_prefix(first, second), "--out", str(out),
                                 "--db", str(db_path))
    assert code == 0, err
    assert first in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.parquet" for n in EXPORTED] + ["manifest.json"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] == first and manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["rtcbench_version"] == rtcbench.__version__
    assert manifest["tables"]["v_delays"] == {"file": "v_delays.parquet", "rows": 2 * N * (K - 1)}
    assert {n: t["rows"] for n, t in manifest["tables"].items()} == {
        "runs": 1, "cells": 2, "rollouts": 2 * N, "inferences": 2 * N * K, "v_cells": 2, "v_rollouts": 2 * N,
        "v_delays": 2 * N * (K - 1)}
    with results.open(db_path) as res:
        runs = res.runs()
        pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"),
                                      runs[runs["run_id"] == first].reset_index(drop=True))
        pd.testing.assert_frame_equal(pd.read_parquet(out / "v_cells.parquet"), res.cells(first))
        pd.testing.assert_frame_equal(pd.read_parquet(out / "v_rollouts.parquet"), res.rollouts(first))
        pd.testing.assert_frame_equal(pd.read_parquet(out / "v_delays.parquet"), res.delays(first))
        cells, v_cells = pd.read_parquet(out / "cells.parquet"), res.cells(first)
        assert list(v_cells.columns[len(cells.columns):]) == [
            "run_status", "run_started_at", "scenario_version", "git_commit", "git_dirty", "rtcbench_version",
            "jax_backend", "device_kind", "host"]  # v_cells is cells and these columns of its run
        pd.testing.assert_frame_equal(cells, v_cells[list(cells.columns)])
    assert pq.read_table(out / "inferences.parquet").num_rows == 2 * N * K

    code, _, err = run_main(capsys, "export", "latest", "--out", str(tmp_path / "b"), "--db", str(db_path))
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["run_id"] == second
    assert pd.read_parquet(tmp_path / "b" / "v_delays.parquet").empty


def test_export_refuses_a_non_empty_directory_without_force(db_path, two_runs, tmp_path, capsys):
    first, _ = two_runs
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_main(capsys, "export", first, "--out", str(out), "--db", str(db_path))
    assert code == 2 and "--out" in err and "not empty" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, _, err = run_main(capsys, "export", first, "--out", str(out), "--db", str(db_path), "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "manifest.json").is_file()
    code, _, err = run_main(capsys, "export", first, "--out", str(out / "notes.txt"), "--db", str(db_path))
    assert code == 2 and "not a directory" in err


def test_export_of_an_unknown_run_writes_nothing(db_path, two_runs, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "export", "nope", "--out", str(out), "--db", str(db_path))
    assert code == 2 and "field 'RUN'" in err and "no run 'nope'" in err
    assert not out.exists()


def test_a_failed_export_leaves_no_partial_file_under_a_final_name(db_path, two_runs, tmp_path, capsys,
                                                                   monkeypatch):
    first, _ = two_runs
    real = pq.ParquetWriter.write_batch
    calls = []

    def write_then_fail(self, batch, *args, **kwargs):
        calls.append(batch.num_rows)
        real(self, batch, *args, **kwargs)  # the cells table's rows reach the temporary file, then the disk fills
        if len(calls) == 2:
            raise OSError("No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", write_then_fail)
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "export", first, "--out", str(out), "--db", str(db_path))
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["runs.parquet"]  # complete; no cells.parquet, no temporary


def test_export_is_registered_once(capsys):
    from rtcbench.cli import main as cli_main
    from rtcbench.cli import results_cmds

    for _ in range(2):
        assert cli_main.main(["export", "--help"]) == 0
    results_cmds.register(cli_main.app)
    assert [c.name for c in cli_main.app.registered_commands].count("export") == 1
    assert "--force" in capsys.readouterr().out


def test_query_out_refuses_to_overwrite_without_force(db_path, two_runs, tmp_path, capsys):
    sql = "SELECT method, solve_rate FROM v_cells ORDER BY run_id, method"
    for name in ("rows.csv", "rows.parquet"):
        target = tmp_path / name
        target.write_text("old")
        code, _, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(target))
        assert code == 2 and "--out" in err and "--force" in err and "Traceback" not in err
        assert target.read_text() == "old"
        code, out, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(target), "--force")
        assert code == 0, err
        assert "3 rows" in out
        assert len(pd.read_csv(target) if name.endswith(".csv") else pd.read_parquet(target)) == 3
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_query_csv_lists_as_json_arrays_and_null(db_path, two_runs, tmp_path, capsys):
    sql = ("SELECT [1, 2, 3] AS l, [[1], [2, NULL]] AS nested, {'a': 1} AS s, NULL::INTEGER AS n, "
           "NULL::TIMESTAMP AS t, NULL::BOOLEAN AS b, 1.5 AS x")
    code, out, err = run_main(capsys, "query", sql, "--db", str(db_path), "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows == [{"l": "[1, 2, 3]", "nested": "[[1], [2, null]]", "s": '{"a": 1}', "n": "", "t": "", "b": "",
                     "x": "1.5"}]
    target = tmp_path / "rows.csv"
    code, _, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(target))
    assert code == 0, err
    assert json.loads(pd.read_csv(target)["l"].iat[0]) == [1, 2, 3]
    code, out, err = run_main(capsys, "query", sql, "--db", str(db_path))
    assert code == 0, err
    assert "[1, 2, 3]" in out and out.count("NULL") == 3 and "<NA>" not in out and "NaT" not in out


def test_query_max_rows(db_path, two_runs, capsys):
    code, out, err = run_main(capsys, "query", "SELECT * FROM range(100000)", "--db", str(db_path), "--max-rows", "10")
    assert code == 2 and "--max-rows" in err and "LIMIT" in err and "Traceback" not in err and out == ""
    code, out, err = run_main(capsys, "query", "SELECT * FROM range(10)", "--db", str(db_path), "--max-rows", "10",
                              "--format", "csv")
    assert code == 0, err
    assert len(out.splitlines()) == 11
    code, _, err = run_main(capsys, "query", "SELECT 1", "--db", str(db_path), "--max-rows", "0")
    assert code == 2 and "--max-rows" in err


def test_query_timeout(db_path, two_runs, capsys):
    slow = "SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE (a.range * b.range) % 7 = 1"
    t0 = time.monotonic()
    code, out, err = run_main(capsys, "query", slow, "--db", str(db_path), "--timeout-s", "0.2")
    assert code == 2 and "--timeout-s" in err and "interrupted" in err and "Traceback" not in err
    assert time.monotonic() - t0 < 30
    code, out, err = run_main(capsys, "query", "SELECT 42 AS answer", "--db", str(db_path), "--timeout-s", "5")
    assert code == 0 and "42" in out, err
    code, _, err = run_main(capsys, "query", "SELECT 1", "--db", str(db_path), "--timeout-s", "-1")
    assert code == 2 and "--timeout-s" in err
