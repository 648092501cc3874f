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
    code, _, _ = run_main(capsys, "compare", "--baseline", base, "--db", str(db_path), "--candidate")  # no value
    assert code == 4
    # without --candidate the latest complete run is the candidate: here no_cells (partial failed), so invalid
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--db", str(db_path), "--format", "json")
    assert code == 2 and json.loads(out)["candidate"] == no_cells


def test_compare_pairs_the_common_first_rollouts_of_runs_of_different_sizes(db_path, baseline_solves, capsys):
    """A run of N rollouts is the first N of any larger run with the same seeds: a 16-rollout rerun is
    compared with the first 16 rollouts of the full run, and says so; rows come naive first."""
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves))
    small = write_run(store, _cells({m: v[:16] for m, v in baseline_solves.items()}))
    code, out, err = run_main(capsys, "compare", "--baseline", base, "--candidate", small, "--db", str(db_path),
                              "--format", "json")
    assert code == 0, out + err
    cells = json.loads(out)["cells"]
    assert [c["method"] for c in cells] == ["naive", "rtc_exp"]
    assert all(c["outcome"] == "not significant" for c in cells)
    assert all(f"compared on the first 16 rollouts (baseline {B}, candidate 16)" in c["reason"] for c in cells)


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


# -- compare: runs picked without ids, thresholds, ratio, --changed-only, two files (#17) -----------------------
def _planted_solve_drop(solves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """rtc_exp loses a third of its solves (a significant regression); naive is unchanged."""
    flipped = solves["rtc_exp"].copy()
    flipped[np.flatnonzero(flipped)[: int(flipped.sum()) // 3]] = False
    return dict(solves, rtc_exp=flipped)


def test_compare_picks_the_latest_runs_when_no_id_is_given(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    oldest = write_run(store, _cells(baseline_solves))
    base = write_run(store, _cells(baseline_solves))
    other = write_run(store, [dict(c, key="other-" + c["key"]) for c in _cells(baseline_solves)])  # nothing shared
    cand = write_run(store, _cells(_planted_solve_drop(baseline_solves)))
    write_run(store, _cells(baseline_solves), status="failed")  # later, but not complete: never picked
    code, out, err = run_main(capsys, "compare", "--db", str(db_path), "--format", "json")
    assert code == 1, out + err
    result = json.loads(out)
    assert (result["baseline"], result["candidate"]) == (base, cand)
    assert "latest complete run" in result["selection"]["candidate"]
    assert "2 of 2 comparability keys shared" in result["selection"]["baseline"]
    assert "passed over 1 later complete run" in result["selection"]["baseline"]  # `other`
    code, out, _ = run_main(capsys, "compare", "--db", str(db_path))  # the table says which runs and why
    assert code == 1
    assert f"candidate {cand}: latest complete run" in out and f"baseline {base}: latest complete run before" in out
    # only the candidate given: the baseline is the latest comparable complete run started before it
    code, out, _ = run_main(capsys, "compare", "--candidate", base, "--db", str(db_path), "--format", "json")
    assert code == 0 and json.loads(out)["baseline"] == oldest
    assert json.loads(out)["selection"]["candidate"] == "given (--candidate)"
    # nothing comparable before the candidate: a usage error naming --baseline, not a pass
    code, _, err = run_main(capsys, "compare", "--candidate", oldest, "--db", str(db_path))
    assert code == 4 and "--baseline" in err and "none of the 0 complete runs" in err
    code, _, err = run_main(capsys, "compare", "--candidate", other, "--db", str(db_path))
    assert code == 4 and "none of the 2 complete runs before the candidate" in err
    # a unique prefix of a run id selects it; an ambiguous one is refused
    code, out, _ = run_main(capsys, "compare", "--baseline", base[:-1], "--candidate", cand[:-1], "--db",
                            str(db_path), "--format", "json")
    assert code == 1 and (json.loads(out)["baseline"], json.loads(out)["candidate"]) == (base, cand)
    assert "starting with" in json.loads(out)["selection"]["baseline"]
    code, _, err = run_main(capsys, "compare", "--baseline", "20", "--db", str(db_path))
    assert code == 4 and "is the start of 5 run ids" in err


def test_compare_without_a_complete_run_is_a_usage_error(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    write_run(store, _cells(baseline_solves), status="failed")
    code, _, err = run_main(capsys, "compare", "--db", str(db_path))
    assert code == 4 and "no complete run" in err and "--candidate" in err


@pytest.mark.parametrize(("spec", "expected"), [
    ("solve_rate:5%", 0.05), ("solve_rate:0.05", 0.05), ("solve_rate:-5%", 0.05), ("solve_rate:12.5%", 0.125),
    ("jerk_max_d2:10%", 0.10), ("jerk_max_d2:0.10", 0.10), ("jerk_max_d2:+10%", 0.10), ("jerk_max_d1:250%", 2.5),
    ("jerk_max_d1: .2 ", 0.2),
])
def test_thresholds_take_fractions_and_percentages_alike(spec, expected):
    name = spec.partition(":")[0]
    thresholds = parse_thresholds([spec])
    assert thresholds[name] == pytest.approx(expected)
    assert all(v == parse_thresholds(None)[k] for k, v in thresholds.items() if k != name)


@pytest.mark.parametrize("spec", [
    "solve_rate:abc", "solve_rate:", "solve_rate:%", "solve_rate:5%%", "solve_rate:--5", "solve_rate:nan",
    "solve_rate:inf", "solve_rate:+5%", "jerk_max_d2:-10%", "solve_rate:150%", "solve_rate:2", "solve_rate",
    "speed:5%",
])
def test_malformed_thresholds_are_usage_errors(db_path, baseline_solves, capsys, spec):
    base = write_run(Store.open(db_path), _cells(baseline_solves))
    code, out, err = run_main(capsys, "compare", "--baseline", base, "--candidate", base, "--db", str(db_path),
                              "--threshold", spec)
    assert code == 4, out + err
    assert "--threshold" in err and "Traceback" not in err


def test_a_threshold_given_twice_is_refused(db_path, baseline_solves, capsys):
    base = write_run(Store.open(db_path), _cells(baseline_solves))
    code, _, err = run_main(capsys, "compare", "--baseline", base, "--candidate", base, "--db", str(db_path),
                            "--threshold", "solve_rate:5%", "--threshold", "solve_rate:0.1")
    assert code == 4 and "given twice" in err and "--threshold" in err


def test_percent_thresholds_gate_like_fractions(db_path, baseline_solves, capsys):
    rng = np.random.default_rng(3)
    jerk = {"naive": rng.gamma(4.0, 0.2, B), "rtc_exp": rng.gamma(4.0, 0.1, B)}
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves, jerk))
    rougher = write_run(store, _cells(baseline_solves, {"naive": jerk["naive"], "rtc_exp": jerk["rtc_exp"] * 1.5}))
    dropped = write_run(store, _cells(_planted_solve_drop(baseline_solves), jerk))

    def gate(cand: str, spec: str) -> int:
        # the other smoothness metrics rose by the same 50 %: a wide threshold keeps them out of this check
        others = [a for m in ("jerk_max_d1", "jerk_max_d2", "jerk_mean_d2") if not spec.startswith(m)
                  for a in ("--threshold", f"{m}:100%")]
        return run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path),
                        "--threshold", spec, *others)[0]

    # jerk is relative: +50 % is beyond 40 % (= 0.40) and within 60 % (= 0.60)
    for metric in ("jerk_mean_d2", "jerk_max_d2"):
        assert gate(rougher, f"{metric}:40%") == 1 and gate(rougher, f"{metric}:0.40") == 1
        assert gate(rougher, f"{metric}:60%") == 0 and gate(rougher, f"{metric}:0.6") == 0
    # the solve rate is absolute: a drop of 0.30 - 0.31 is beyond 20 points and within 50 points
    drop = baseline_solves["rtc_exp"].mean() - _planted_solve_drop(baseline_solves)["rtc_exp"].mean()
    assert 0.2 < drop < 0.5
    assert gate(dropped, "solve_rate:20%") == 1 and gate(dropped, "solve_rate:-20%") == 1
    assert gate(dropped, "solve_rate:50%") == 0 and gate(dropped, "solve_rate:0.5") == 0
    # the table says how each threshold was read
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", base, "--db", str(db_path),
                            "--threshold", "solve_rate:-12.5%", "--threshold", "jerk_max_d2:0.4")
    assert "thresholds: solve_rate 12.5 pp (absolute), jerk_mean_d2 10% of the baseline mean (relative), " \
           "jerk_max_d1 10% of the baseline mean (relative), jerk_max_d2 40% of the baseline mean (relative)" in out


def test_compare_shows_the_jerk_ratio(db_path, baseline_solves, capsys):
    rng = np.random.default_rng(3)
    jerk = {"naive": rng.gamma(4.0, 0.2, B), "rtc_exp": rng.gamma(4.0, 0.1, B)}
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves, jerk))
    cand = write_run(store, _cells(baseline_solves, {"naive": jerk["naive"], "rtc_exp": jerk["rtc_exp"] * 1.5}))
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path),
                            "--format", "json")
    assert code == 1
    metrics = {c["method"]: {m["metric"]: m for m in c["metrics"]} for c in json.loads(out)["cells"]}
    assert metrics["rtc_exp"]["jerk_max_d2"]["ratio"] == pytest.approx(1.5)
    assert metrics["naive"]["jerk_max_d2"]["ratio"] == pytest.approx(1.0)
    assert metrics["rtc_exp"]["solve_rate"]["ratio"] == pytest.approx(1.0)
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path))
    assert "jerk ratio" in out
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "1.500" in rows["rtc_exp"] and "1.000" in rows["naive"]


@pytest.mark.parametrize("flag", ["--changed-only", "--only-changed"])
def test_compare_changed_only(db_path, baseline_solves, capsys, flag):
    store = Store.open(db_path)
    base = write_run(store, _cells(baseline_solves))
    cand = write_run(store, _cells(_planted_solve_drop(baseline_solves)))
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path), flag,
                            "--format", "json")
    result = json.loads(out)
    assert code == 1 and [c["method"] for c in result["cells"]] == ["rtc_exp"] and result["cells_hidden"] == 1
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path), flag)
    assert code == 1 and "rtc_exp" in out and "│ naive" not in out
    assert "1 of 2 cells not significant, not shown" in out
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path))
    assert "│ naive" in out  # shown without the flag
    # a not-comparable cell is a change: shown, and the exit code still counts every cell
    partial = write_run(store, _cells({"naive": baseline_solves["naive"]}))
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", partial, "--db", str(db_path),
                            flag, "--format", "json")
    assert code == 2 and [(c["method"], c["outcome"]) for c in json.loads(out)["cells"]] == [
        ("rtc_exp", "not comparable")]
    # identical runs: nothing shown, exit 0
    same = write_run(store, _cells(baseline_solves))
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", same, "--db", str(db_path), flag,
                            "--format", "json")
    assert code == 0 and json.loads(out)["cells"] == [] and json.loads(out)["cells_hidden"] == 2


def test_compare_runs_in_two_files(tmp_path, baseline_solves, capsys):
    main_db, pr_db = tmp_path / "main.duckdb", tmp_path / "pr.duckdb"
    base = write_run(Store.open(main_db), _cells(baseline_solves))
    pr_store = Store.open(pr_db)
    cand = write_run(pr_store, _cells(_planted_solve_drop(baseline_solves)))
    later_same = write_run(pr_store, _cells(baseline_solves))  # the candidate file's own runs are not baselines
    args = ("compare", "--db", str(pr_db), "--baseline-db", str(main_db))
    code, out, err = run_main(capsys, *args, "--baseline", base, "--candidate", cand, "--format", "json")
    assert code == 1, out + err
    result = json.loads(out)
    assert {c["method"]: c["outcome"] for c in result["cells"]} == {"naive": "not significant", "rtc_exp": "worse"}
    assert (result["baseline_db"], result["candidate_db"]) == (str(main_db), str(pr_db))
    # no ids: the candidate is the PR file's latest complete run, the baseline the main file's latest comparable
    code, out, _ = run_main(capsys, *args, "--format", "json")
    assert code == 0 and (json.loads(out)["baseline"], json.loads(out)["candidate"]) == (base, later_same)
    assert "in the baseline file" in json.loads(out)["selection"]["baseline"]
    code, out, _ = run_main(capsys, *args, "--candidate", cand)
    assert code == 1 and f"baseline {base} in {main_db}:" in out
    # the baseline id is looked up in the baseline file only
    code, _, err = run_main(capsys, *args, "--baseline", later_same, "--candidate", cand)
    assert code == 4 and f"no run {later_same!r}" in err and "--baseline" in err and str(main_db) in err
    # a bad baseline file is a usage error naming --baseline-db
    code, _, err = run_main(capsys, "compare", "--db", str(pr_db), "--baseline-db", str(tmp_path / "absent.duckdb"))
    assert code == 4 and "--baseline-db" in err and "no such database file" in err
    # the candidate's own file given twice is one file: the baseline must then predate the candidate
    code, out, _ = run_main(capsys, "compare", "--db", str(pr_db), "--baseline-db", str(pr_db), "--format", "json")
    assert code == 0 and (json.loads(out)["baseline"], json.loads(out)["candidate"]) == (cand, later_same)
    assert "before the candidate" in json.loads(out)["selection"]["baseline"]
    assert {c["method"]: c["outcome"] for c in json.loads(out)["cells"]}["rtc_exp"] == "better"


# -- query: -f FILE.sql, --param, --out (#17) ------------------------------------------------------------------
# The README's example, restricted to the latest complete run and showing its id.
README_QUERY = (
    "SELECT run_id, setup, method, solve_rate, solve_ci_low, solve_ci_high, jerk_max_d2, violation_rate "
    "FROM v_cells WHERE run_id = (SELECT run_id FROM runs WHERE status = 'complete' ORDER BY started_at DESC "
    "LIMIT 1) ORDER BY setup, method"
)


def test_readme_query_shows_only_the_latest_run(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    write_run(store, _cells(baseline_solves))
    latest = write_run(store, _cells(baseline_solves))
    write_run(store, _cells(baseline_solves), status="failed")
    code, out, err = run_main(capsys, "query", README_QUERY, "--db", str(db_path), "--format", "json")
    assert code == 0, err
    assert [(r["run_id"], r["method"]) for r in json.loads(out)] == [(latest, "naive"), (latest, "rtc_exp")]


def test_query_reads_sql_from_a_file(db_path, baseline_solves, capsys, tmp_path):
    write_run(Store.open(db_path), _cells(baseline_solves))
    sql_file = tmp_path / "cells.sql"
    sql_file.write_text("-- methods of the file\nSELECT method, n_rollouts\nFROM v_cells\nORDER BY method;\n")
    for flag in ("-f", "--file"):
        code, out, err = run_main(capsys, "query", flag, str(sql_file), "--db", str(db_path), "--format", "json")
        assert code == 0, err
        assert json.loads(out) == [{"method": "naive", "n_rollouts": B}, {"method": "rtc_exp", "n_rollouts": B}]
    code, _, err = run_main(capsys, "query", "SELECT 1", "-f", str(sql_file), "--db", str(db_path))
    assert code == 2 and "one of them" in err  # both
    code, _, err = run_main(capsys, "query", "--db", str(db_path))
    assert code == 2 and "-f/--file" in err  # neither
    code, _, err = run_main(capsys, "query", "-f", str(tmp_path / "absent.sql"), "--db", str(db_path))
    assert code == 2 and "--file" in err and "absent.sql" in err
    (tmp_path / "empty.sql").write_text("  \n")
    code, _, err = run_main(capsys, "query", "-f", str(tmp_path / "empty.sql"), "--db", str(db_path))
    assert code == 2 and "empty" in err
    (tmp_path / "bad.sql").write_text("SELEC method FROM v_cells")
    code, _, err = run_main(capsys, "query", "-f", str(tmp_path / "bad.sql"), "--db", str(db_path))
    assert code == 2 and "query failed" in err and "--file" in err and "Traceback" not in err


def test_query_binds_parameters(db_path, baseline_solves, capsys):
    store = Store.open(db_path)
    first = write_run(store, _cells(baseline_solves))
    write_run(store, _cells(baseline_solves))
    sql = "SELECT run_id, method FROM v_cells WHERE run_id = $run AND n_rollouts >= $n ORDER BY method"
    code, out, err = run_main(capsys, "query", sql, "--param", f"run={first}", "--param", f"n={B}", "--db",
                              str(db_path), "--format", "json")
    assert code == 0, err
    assert json.loads(out) == [{"run_id": first, "method": "naive"}, {"run_id": first, "method": "rtc_exp"}]
    code, out, _ = run_main(capsys, "query", sql, "--param", f"run={first}", "--param", f"n={B + 1}", "--db",
                            str(db_path), "--format", "json")
    assert code == 0 and json.loads(out) == []
    # a value is bound, never pasted into the SQL
    code, out, _ = run_main(capsys, "query", sql, "--param", "run=' OR 1=1 --", "--param", "n=0", "--db",
                            str(db_path), "--format", "json")
    assert code == 0 and json.loads(out) == []
    code, _, err = run_main(capsys, "query", sql, "--param", f"run={first}", "--db", str(db_path))
    assert code == 2 and "query failed" in err and "n" in err  # $n not given
    for bad in ("run", "1run=x", "=x", "my-run=x"):
        code, _, err = run_main(capsys, "query", sql, "--param", bad, "--db", str(db_path))
        assert code == 2 and "--param" in err, bad
    code, _, err = run_main(capsys, "query", sql, "--param", "n=1", "--param", "n=2", "--db", str(db_path))
    assert code == 2 and "given twice" in err


def test_query_exports_parquet_and_csv(db_path, baseline_solves, capsys, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    write_run(Store.open(db_path), _cells(baseline_solves))
    sql = "SELECT method, n_rollouts, solve_rate, NULL::INTEGER AS missing, run_started_at FROM v_cells ORDER BY method"
    parquet = tmp_path / "cells.parquet"
    code, out, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(parquet))
    assert code == 0, err
    assert f"2 rows x 5 columns written to {parquet}" in out
    table = pq.read_table(parquet)
    assert table.column_names == ["method", "n_rollouts", "solve_rate", "missing", "run_started_at"]
    assert str(table.schema.field("n_rollouts").type) == "int32"
    assert str(table.schema.field("missing").type) == "int32"  # a NULL integer stays an integer column
    assert str(table.schema.field("run_started_at").type).startswith("timestamp")
    assert table.column("method").to_pylist() == ["naive", "rtc_exp"]
    assert table.column("solve_rate").to_pylist()[0] == pytest.approx(baseline_solves["naive"].mean())
    csv = tmp_path / "cells.CSV"
    code, out, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(csv))
    assert code == 0, err
    frame = pd.read_csv(csv)
    assert list(frame["method"]) == ["naive", "rtc_exp"] and list(frame["n_rollouts"]) == [B, B]
    # the same rows as --format csv prints
    code, printed, _ = run_main(capsys, "query", sql, "--db", str(db_path), "--format", "csv")
    assert printed == csv.read_text()
    for bad in ("cells.json", "cells", "cells.parquet.gz"):
        code, _, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(tmp_path / bad))
        assert code == 2 and "--out" in err and ".parquet or .csv" in err, bad
        assert not (tmp_path / bad).exists()
    code, _, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(tmp_path / "no" / "x.csv"))
    assert code == 2 and "--out" in err and "does not exist" in err
    # a failed query writes nothing, and leaves no temporary file behind
    code, _, err = run_main(capsys, "query", "SELECT nope FROM v_cells", "--db", str(db_path), "--out",
                            str(tmp_path / "failed.parquet"))
    assert code == 2 and "query failed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cells.parquet", "cells.CSV", "results.duckdb"])


def test_query_export_keeps_the_sandbox(db_path, baseline_solves, capsys):
    write_run(Store.open(db_path), _cells(baseline_solves))
    out_file = db_path.parent / "out.csv"
    for sql in (f"COPY cells TO '{db_path.parent / 'leak.csv'}'", "DELETE FROM cells",
                f"ATTACH '{db_path.parent / 'other.duckdb'}' AS other", "SET enable_external_access = true",
                f"SELECT * FROM read_csv('{db_path.parent / 'leak.csv'}')"):
        code, out, err = run_main(capsys, "query", sql, "--db", str(db_path), "--out", str(out_file))
        assert code == 2 and "query failed" in err, (sql, out, err)
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["results.duckdb"]
    with read_only(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM cells").fetchone()[0] == 2


# -- compare: what differs in a not-comparable cell, runs made with --only, row order ----------------------------
def _material(method: str, *, p_spike: float = 0.05, policy_sha256: str = "a" * 64, H: int = 8,
              flow_steps: int = 5) -> dict:
    """A cell_config as `rtcbench run` stores it (`rtcbench.rows.cell_config`): the comparability key's material,
    the seeds, the rollouts and the policy's sidecar summary."""
    return {"level": "s/h4_thrust_aim", "method": {"kind": method, "name": None},
            "setup": {"name": "longtail", "profile": {"kind": "longtail", "p_spike": p_spike, "base": 2},
                      "forecaster": {"kind": "window_max", "window": 8}, "tail": []},
            "H": H, "flow_steps": flow_steps, "dt_ms": 33.3, "max_steps": 32, "fallback": "hold",
            "policy_sha256": policy_sha256, "rollouts": B,
            "policy": {"path": "/somewhere/bc.msgpack", "kind": "bc", "data": None, "modality": None}}


def test_compare_names_the_fields_that_make_a_cell_not_comparable(db_path, baseline_solves, capsys):
    """Cells of the same level, method and setup whose comparability keys differ are one row that says which
    stored fields differ (at most a few, then how many more), not two rows without a partner."""
    store = Store.open(db_path)
    seeds = {"env": 0, "delay": 0, "policy": 0}
    base = write_run(store, [dict(c, seeds=seeds, cell_config=_material(c["method"]))
                             for c in _cells(baseline_solves)])
    changed = {"naive": _material("naive", p_spike=0.1, policy_sha256="b" * 64),  # two fields
               "rtc_exp": _material("rtc_exp", p_spike=0.1, H=16, flow_steps=10, policy_sha256="b" * 64)}  # four
    cand = write_run(store, [dict(c, key="new-" + c["key"], seeds=seeds, cell_config=changed[c["method"]])
                             for c in _cells(baseline_solves)])
    code, out, err = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path),
                              "--format", "json")
    assert code == 2, out + err
    rows = json.loads(out)["cells"]
    assert [c["method"] for c in rows] == ["naive", "rtc_exp"]  # one row per cell, not one per run
    cells = {c["method"]: c for c in rows}
    assert all(c["outcome"] == "not comparable" for c in cells.values())
    assert cells["naive"]["reason"] == "policy sha256 differs; setups[longtail].profile.p_spike 0.05 -> 0.1"
    assert cells["rtc_exp"]["reason"] == ("policy sha256 differs; setups[longtail].profile.p_spike 0.05 -> 0.1; "
                                          "H 8 -> 16 (+1 more)")
    assert cells["rtc_exp"]["differences"][-1] == "flow_steps 5 -> 10"  # the JSON lists every difference
    # the table says it too
    code, out, _ = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path))
    assert code == 2 and "setups[longtail].profile.p_spike 0.05 -> 0.1" in out and "(+1 more)" in out
    # a method field, and keys that differ where no stored field does (a trace file, say)
    other_method = _material("naive") | {"method": {"kind": "naive", "name": "plain"}}
    renamed = write_run(store, [dict(_cells(baseline_solves)[0], key="x", seeds=seeds, cell_config=other_method)])
    same_material = write_run(store, [dict(_cells(baseline_solves)[0], key="y", seeds=seeds,
                                           cell_config=_material("naive"))])
    with read_only(db_path) as conn:
        by_method = compare_runs(conn, base, renamed, thresholds=parse_thresholds(None))
        by_file = compare_runs(conn, base, same_material, thresholds=parse_thresholds(None))
    assert [c.reason for c in by_method.cells] == ["methods[naive].name null -> plain",
                                                   "no candidate cell with this comparability key or of this "
                                                   "level, method and setup"]  # rtc_exp
    assert by_file.cells[0].method == "naive" and by_file.cells[0].outcome == "not comparable"
    assert "no stored field differs" in by_file.cells[0].reason and "trace" in by_file.cells[0].reason


def _made_with_only(store: Store, run_id: str, spec: str) -> str:
    """Record `run_id` as made with ``--only spec`` (as `rtcbench run --only` records it in runs.cell_filter)."""
    import sqlalchemy as sa

    from rtcbench.store import schema

    with store.transaction() as conn:
        conn.execute(sa.update(schema.runs).where(schema.runs.c.run_id == run_id).values(cell_filter=spec))
    return run_id


def test_compare_a_run_made_with_only_on_the_cells_both_runs_hold(db_path, baseline_solves, capsys):
    """A run made with --only holds a subset of the cells: the others are named once in a note and never fail
    the gate; the shared cells are compared as usual (a regression in one still exits 1)."""
    store = Store.open(db_path)
    full_cells = _cells(baseline_solves) + [dict(c, setup="spiky", key=c["key"] + "-spiky")
                                            for c in _cells(baseline_solves)]
    full = write_run(store, full_cells)
    subset = _made_with_only(store, write_run(store, [c for c in full_cells if c["method"] == "naive"]),
                             "method=naive")
    for baseline, candidate, lacking in ((full, subset, "candidate"), (subset, full, "baseline")):
        code, out, err = run_main(capsys, "compare", "--baseline", baseline, "--candidate", candidate, "--db",
                                  str(db_path), "--format", "json")
        assert code == 0, out + err
        result = json.loads(out)
        assert [(c["method"], c["setup"], c["outcome"]) for c in result["cells"]] == [
            ("naive", "longtail", "not significant"), ("naive", "spiky", "not significant")]
        only = "baseline" if lacking == "candidate" else "candidate"
        assert result["only_in"] == {only: ["s/h4_thrust_aim/rtc_exp/longtail", "s/h4_thrust_aim/rtc_exp/spiky"],
                                     lacking: []}
        notes = [n for n in result["notes"] if "rtc_exp" in n]
        assert len(notes) == 1 and f"only in the {only} run" in notes[0] and "--only 'method=naive'" in notes[0]
    code, out, _ = run_main(capsys, "compare", "--baseline", full, "--candidate", subset, "--db", str(db_path))
    assert code == 0 and "no regression" in out
    assert out.count("rtc_exp") == 2 and "│ rtc_exp" not in out  # in the note, not as rows
    # a regression in a shared cell still fails the gate
    dropped = dict(baseline_solves, naive=_planted_solve_drop({"rtc_exp": baseline_solves["naive"]})["rtc_exp"])
    worse = _made_with_only(store, write_run(store, [c for c in _cells(dropped) if c["method"] == "naive"]),
                            "method=naive")
    code, out, _ = run_main(capsys, "compare", "--baseline", full, "--candidate", worse, "--db", str(db_path))
    assert code == 1 and "REGRESSION" in out
    # a run that failed before writing a cell still makes that cell not comparable, --only or not
    failed = _made_with_only(store, write_run(store, [full_cells[0]], status="failed"), "method=naive")
    code, out, _ = run_main(capsys, "compare", "--baseline", full, "--candidate", failed, "--db", str(db_path),
                            "--format", "json")
    assert code == 2 and ("naive", "spiky", "not comparable") in [
        (c["method"], c["setup"], c["outcome"]) for c in json.loads(out)["cells"]]
    # a cell the candidate holds and a full baseline does not: the scenarios differ, not comparable
    other = _made_with_only(store, write_run(store, [dict(full_cells[0], level="s/other", key="k-other")]),
                            "level=s/other")
    code, out, _ = run_main(capsys, "compare", "--baseline", full, "--candidate", other, "--db", str(db_path),
                            "--format", "json")
    assert code == 2 and [(c["level"], c["outcome"]) for c in json.loads(out)["cells"]] == [
        ("s/other", "not comparable")]
    # two --only runs without a cell in common: nothing was compared, which is no pass
    code, out, _ = run_main(capsys, "compare", "--baseline", subset, "--candidate", other, "--db", str(db_path),
                            "--format", "json")
    assert code == 2 and json.loads(out)["cells"] == [] and any("no cell" in n for n in json.loads(out)["notes"])


def test_compare_rows_come_by_level_setup_and_method_naive_first(db_path, capsys):
    rng = np.random.default_rng(11)
    specs = [(level, setup, method) for level in ("s/b_level", "s/a_level") for setup in ("d4", "d2")
             for method in ("rtc_exp", "bid16", "naive", "k4.rtc_exp", "k4.naive")]
    cells = [{"level": level, "method": method, "setup": setup, "key": f"{level}-{setup}-{method}",
              "solved": rng.random(B) < 0.8} for level, setup, method in specs]
    store = Store.open(db_path)
    base, cand = write_run(store, cells), write_run(store, cells[::-1])
    code, out, err = run_main(capsys, "compare", "--baseline", base, "--candidate", cand, "--db", str(db_path),
                              "--format", "json")
    assert code == 0, out + err
    rows = [(c["level"], c["setup"], c["method"]) for c in json.loads(out)["cells"]]
    methods = ["naive", "bid16", "rtc_exp", "k4.naive", "k4.rtc_exp"]  # naive first, then each family's naive first
    assert rows == [(level, setup, m) for level in ("s/a_level", "s/b_level") for setup in ("d2", "d4")
                    for m in methods]


def test_reports_readme_runs_the_report_sql_with_param(db_path, baseline_solves, capsys):
    """reports/README.md's by-hand command (-f FILE --param run_id=RUN) works as written."""
    from store_helpers import REPO_ROOT

    run_id = write_run(Store.open(db_path), _cells(baseline_solves))
    write_run(Store.open(db_path), _cells(baseline_solves))  # another run: the parameter picks one
    line = next(ln.strip() for ln in (REPO_ROOT / "reports" / "README.md").read_text().splitlines()
                if ln.strip().startswith("rtcbench query -f reports/cells.sql"))
    args = line.split()[1:]
    assert args[args.index("--param") + 1].startswith("run_id=")
    args[args.index("--param") + 1] = f"run_id={run_id}"
    args[args.index("-f") + 1] = str(REPO_ROOT / args[args.index("-f") + 1])
    code, out, err = run_main(capsys, *args, "--db", str(db_path), "--format", "json")
    assert code == 0, err
    assert [(r["method"], r["n_rollouts"]) for r in json.loads(out)] == [("naive", B), ("rtc_exp", B)]
