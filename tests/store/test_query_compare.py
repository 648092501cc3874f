"""`rtcbench query` is read-only; `rtcbench compare` gates on paired per-rollout data (real files, real CLI)."""

import json

import duckdb
import numpy as np
import pytest
from store_helpers import cli, run_main, write_run

from rtcbench.store import Store, read_only
from rtcbench.store.compare import compare_runs, parse_thresholds

B = 64


def _cells(solved_by_method: dict[str, np.ndarray], jerk_d2: dict[str, np.ndarray] | None = None) -> list[dict]:
    return [
        {"level": "s/h4_thrust_aim", "method": method, "setup": "longtail", "key": f"key-{method}", "solved": solved,
         "jerk_d2": None if jerk_d2 is None else jerk_d2[method]}
        for method, solved in solved_by_method.items()
    ]


@pytest.fixture
def baseline_solves():
    rng = np.random.default_rng(7)
    return {"naive": rng.random(B) < 0.8, "rtc_exp": rng.random(B) < 0.9}


def test_query_cannot_write(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    write_run(store, _cells(baseline_solves))
    statements = [
        "DELETE FROM cells",
        "UPDATE runs SET status = 'failed'",
        "DROP VIEW v_cells",
        "CREATE TABLE t AS SELECT 1",
        f"COPY cells TO '{db_path.parent / 'leak.csv'}'",
        f"ATTACH '{db_path.parent / 'other.duckdb'}' AS other",
    ]
    proc = cli("query", statements[0], "--db", str(db_path))  # once through a real process
    assert proc.returncode == 2 and "query failed" in proc.stderr and "Traceback" not in proc.stderr
    for sql in statements:
        code, out, err = run_main(capsys, "query", sql, "--db", str(db_path))
        assert code == 2, (sql, out, err)
        assert "query failed" in err
    assert not (db_path.parent / "leak.csv").exists() and not (db_path.parent / "other.duckdb").exists()
    with read_only(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 2
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "complete"


def test_query_formats(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    write_run(store, _cells(baseline_solves))
    sql = "SELECT method, solve_rate, n_rollouts FROM v_cells ORDER BY method"
    code, out, err = run_main(capsys, "query", sql, "--db", str(db_path), "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["method"] for r in rows] == ["naive", "rtc_exp"]
    assert rows[0]["solve_rate"] == pytest.approx(baseline_solves["naive"].mean())
    code, out, _ = run_main(capsys, "query", sql, "--db", str(db_path), "--format", "csv")
    assert out.splitlines()[0] == "method,solve_rate,n_rollouts" and len(out.splitlines()) == 3
    code, out, _ = run_main(capsys, "query", sql, "--db", str(db_path))
    assert code == 0 and "rtc_exp" in out and "(2 rows)" in out
    code, _, err = run_main(capsys, "query", sql, "--db", str(db_path), "--format", "xml")
    assert code == 2 and "--format" in err


def test_compare_identical_runs_passes(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves))
    cand = write_run(store, _cells(baseline_solves))
    code, out, err = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path))
    assert code == 0, out + err
    assert "no regression" in out
    with read_only(db_path) as conn:
        result = compare_runs(conn, base, cand, thresholds=parse_thresholds(None))
    assert [c.outcome for c in result.cells] == ["not significant", "not significant"]


def test_compare_flags_a_planted_solve_regression(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves))
    degraded = dict(baseline_solves)
    flipped = degraded["rtc_exp"].copy()
    solved_idx = np.flatnonzero(flipped)
    flipped[solved_idx[: len(solved_idx) // 3]] = False  # a third of the solves fail in the candidate
    degraded["rtc_exp"] = flipped
    cand = write_run(store, _cells(degraded))
    proc = cli("compare", "--baseline", base, "--candidate", cand, "--db", str(db_path), "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    outcomes = {c["method"]: c["outcome"] for c in out["cells"]}
    assert outcomes == {"naive": "not significant", "rtc_exp": "worse"}
    # the same drop is not a regression when the threshold is larger than the effect
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path),
                            "--threshold", "solve_rate:0.5")
    assert code == 0, out
    # and the reverse direction is an improvement, not a regression
    code, out, _ = run_main(capsys, "compare", "--baseline", cand, "--candidate", base, "--db", str(db_path),
                            "--format", "json")
    assert code == 0
    assert {c["method"]: c["outcome"] for c in json.loads(out)["cells"]}["rtc_exp"] == "better"


def test_compare_small_drop_is_not_significant(db_path, baseline_solves):
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves))
    degraded = dict(baseline_solves)
    flipped = degraded["naive"].copy()
    flipped[np.flatnonzero(flipped)[:4]] = False  # 4/64 = 0.0625 beyond the 0.05 threshold, but p = 0.125
    degraded["naive"] = flipped
    cand = write_run(store, _cells(degraded))
    with read_only(db_path) as conn:
        result = compare_runs(conn, base, cand, thresholds=parse_thresholds(None))
    naive = next(c for c in result.cells if c.method == "naive")
    solve = next(m for m in naive.metrics if m.metric == "solve_rate")
    assert solve.effect == pytest.approx(-4 / B) and solve.evidence.startswith("McNemar exact p=0.125")
    assert naive.outcome == "not significant" and result.exit_code == 0


def test_compare_flags_a_jerk_regression(db_path, baseline_solves, capsys):
    rng = np.random.default_rng(3)
    jerk = {"naive": rng.gamma(4.0, 0.2, B), "rtc_exp": rng.gamma(4.0, 0.1, B)}
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves, jerk))
    rougher = {"naive": jerk["naive"], "rtc_exp": jerk["rtc_exp"] * 1.5}
    cand = write_run(store, _cells(baseline_solves, rougher))
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path),
                            "--format", "json")
    assert code == 1, out
    cells = {c["method"]: c for c in json.loads(out)["cells"]}
    assert cells["rtc_exp"]["outcome"] == "worse" and cells["naive"]["outcome"] == "not significant"
    jerk_d2 = next(m for m in cells["rtc_exp"]["metrics"] if m["metric"] == "jerk_max_d2")
    assert jerk_d2["verdict"] == "worse" and jerk_d2["effect"] == pytest.approx(0.5)


def test_compare_invalid_and_not_comparable(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves))
    empty = write_run(store, [{"level": "s/h4_thrust_aim", "method": m, "setup": "longtail", "key": f"key-{m}",
                               "solved": np.zeros(0, bool)} for m in baseline_solves])
    proc = cli("compare", "--baseline", base, "--candidate", empty, "--db", str(db_path), "--format", "json")
    assert proc.returncode == 2  # through a real process once
    assert {c["outcome"] for c in json.loads(proc.stdout)["cells"]} == {"invalid"}
    assert "zero rollouts" in json.loads(proc.stdout)["cells"][0]["reason"]

    no_cells = write_run(store, [])
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", no_cells, "--db", str(db_path))
    assert code == 2 and "invalid" in out

    partial = write_run(store, _cells({"naive": baseline_solves["naive"]}), status="failed")
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", partial, "--db", str(db_path),
                            "--format", "json")
    assert code == 2
    result = json.loads(out)
    assert {c["method"]: c["outcome"] for c in result["cells"]} == {"naive": "not significant",
                                                                   "rtc_exp": "not comparable"}
    assert any("failed" in note for note in result["notes"])

    code, _, err = run_main(capsys, "compare", "--baseline", base, "--candidate", "no-such-run", "--db", str(db_path))
    assert code == 4 and "no run 'no-such-run'" in err  # usage error: not a result
    code, _, err = run_main(capsys, "compare", "--baseline", base, "--candidate", base, "--db", str(db_path),
                            "--threshold", "speed:1")
    assert code == 4 and "--threshold" in err
    code, _, err = run_main(capsys, "compare", "--baseline", base, "--candidate", base, "--db", str(db_path),
                            "--alpha", "2")
    assert code == 4 and "--alpha" in err
    code, _, err = run_main(capsys, "compare", "--baseline", base, "--candidate", base,
                            "--db", str(db_path.parent / "absent.duckdb"))
    assert code == 4 and "no such database file" in err
    code, _, _ = run_main(capsys, "compare", "--baseline", base, "--db", str(db_path))  # --candidate missing
    assert code == 4


def test_compare_invalid_when_rollout_rows_are_missing(db_path, baseline_solves):
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves))
    cand = write_run(store, _cells(baseline_solves))
    conn = duckdb.connect(str(db_path))  # damage the candidate outside rtcbench
    conn.execute("DELETE FROM rollouts WHERE cell_id IN (SELECT cell_id FROM cells WHERE run_id = ? AND method = 'naive')"
                 " AND rollout >= 10", [cand])
    conn.close()
    with read_only(db_path) as conn:
        result = compare_runs(conn, base, cand, thresholds=parse_thresholds(None))
    naive = next(c for c in result.cells if c.method == "naive")
    assert naive.outcome == "invalid" and "10 rollout rows, expected 64" in naive.reason
    assert result.exit_code == 2


def test_compare_refuses_to_pair_rollouts_drawn_from_other_seeds(db_path, baseline_solves):
    store = Store.open(db_path)
    cells = _cells(baseline_solves)
    base = write_run(store, [dict(c, seeds={"env": 0, "delay": 0, "policy": 0}) for c in cells])
    same = write_run(store, [dict(c, seeds={"env": 0, "delay": 0, "policy": 1}) for c in cells])
    other = write_run(store, [dict(c, seeds={"env": 1, "delay": 0, "policy": 0}) for c in cells])
    with read_only(db_path) as conn:
        ok = compare_runs(conn, base, same, thresholds=parse_thresholds(None))
        refused = compare_runs(conn, base, other, thresholds=parse_thresholds(None))
    assert ok.exit_code == 0  # only the flow-noise seed differs: env states and delays are still paired
    assert {c.outcome for c in refused.cells} == {"not comparable"} and refused.exit_code == 2
    assert "env seeds differ" in refused.cells[0].reason
