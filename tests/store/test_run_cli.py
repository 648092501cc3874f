"""`rtcbench run` end to end on tiny scenarios: real engine, shipped policy, real processes, one DuckDB file.

Each process traces and compiles a Kinetix rollout (tens of seconds on 2 cores). Every scenario here has
the same level, method and shapes, and a session-wide persistent JAX compilation cache holds the
executable, so only the first process pays the full compile.

The quality gate is here too: three identical runs of the gate scenario are written concurrently, and
the solve rate and jerk of those runs must stay inside recorded bands.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import duckdb
import pytest
from store_helpers import REPO_ROOT, cli, cli_here
from store_scenarios import GATE_SETUPS, scenario_yaml

from rtcbench.store import read_only

pytestmark = pytest.mark.slow


def _env(jax_cache_dir) -> dict:
    env = dict(os.environ)
    env.pop("RTCBENCH_DB", None)
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(jax_cache_dir))
    return env


def _spawn(args, jax_cache_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rtcbench.cli.main", *args], cwd=REPO_ROOT, env=_env(jax_cache_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(db_path, sql, params=()):
    with read_only(db_path) as conn:
        return conn.execute(sql, list(params)).fetchone()[0]


def test_bad_input_writes_nothing(tiny_scenarios, tmp_path, jax_cache_dir):
    db = tmp_path / "r.duckdb"
    bad = tmp_path / "bad.yaml"
    bad.write_text((tiny_scenarios / "gate.yaml").read_text().replace("dt_ms: 33.3", "dt_ms: -1"))
    proc = cli("run", str(bad), "--db", str(db), env={"JAX_COMPILATION_CACHE_DIR": str(jax_cache_dir)})
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr and "dt_ms" in proc.stderr
    assert "Traceback" not in proc.stderr and not db.exists()
    proc = cli_here("run", str(tiny_scenarios / "gate.yaml"), "--db", str(db), "--device", "gpu")
    assert proc.returncode == 2 and "no GPU" in proc.stderr and not db.exists()
    proc = cli_here("run", str(tiny_scenarios / "gate.yaml"), "--db", str(tmp_path / "missing" / "r.duckdb"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_kill_mid_run_then_resume(tiny_scenarios, tmp_path, jax_cache_dir):
    """Five cells share one compile, so after the first is written the rest follow within seconds:
    poll fast and SIGKILL as soon as one cell is in the file."""
    scenario = tiny_scenarios / "five_setups.yaml"
    db = tmp_path / "killed.duckdb"
    proc = _spawn(["run", str(scenario), "--db", str(db), "--rollouts", "16"], jax_cache_dir)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if not db.exists():
            continue
        try:
            with duckdb.connect(str(db), read_only=True) as conn:
                cells = conn.execute("SELECT count(*) FROM cells").fetchone()[0]
        except duckdb.Error:
            continue  # the run holds the lock for a moment, or the schema is being created
        if cells >= 1:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    # the file opens, holds only whole cells, and the run is not complete
    with read_only(db) as conn:
        (run_id, status), = conn.execute("SELECT run_id, status FROM runs").fetchall()
        assert status == "running"
        n_cells = conn.execute("SELECT count(*) FROM cells").fetchone()[0]
        assert 1 <= n_cells < 5
        per_cell = conn.execute("SELECT c.n_rollouts, count(r.rollout) FROM cells c LEFT JOIN rollouts r "
                                "USING (cell_id) GROUP BY c.cell_id, c.n_rollouts").fetchall()
        assert all(n == 16 and stored == 16 for n, stored in per_cell)
        assert conn.execute("SELECT count(DISTINCT cell_id) FROM inferences").fetchone()[0] == n_cells
        assert conn.execute("SELECT count(*) FROM rollouts WHERE cell_id NOT IN (SELECT cell_id FROM cells)"
                            ).fetchone()[0] == 0
    # resumed by a prefix of its id, without --rollouts: the run's stored --rollouts 16 is re-applied
    done = cli("run", str(scenario), "--db", str(db), "--resume", run_id[:17],
               env={"JAX_COMPILATION_CACHE_DIR": str(jax_cache_dir)})
    assert done.returncode == 0, done.stderr
    assert f"{5 - n_cells} of 5 cells to run" in done.stderr
    with read_only(db) as conn:
        assert conn.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()[0] == "complete"
        setups = [r[0] for r in conn.execute("SELECT setup FROM cells WHERE run_id = ? ORDER BY setup", [run_id]).fetchall()]
        assert setups == [f"fixed{d}" for d in range(5)]
        assert conn.execute("SELECT count(*), count(DISTINCT (cell_id, rollout)) FROM rollouts").fetchone() == (80, 80)
    # resuming with a changed scenario is refused: results are never attributed to other data
    changed = tmp_path / "changed.yaml"
    changed.write_text(scenario.read_text().replace("max_steps: 32", "max_steps: 33"))
    refused = cli("run", str(changed), "--db", str(db), "--resume", run_id)
    assert refused.returncode == 2 and "different scenario configuration" in refused.stderr
    other_n = cli_here("run", str(scenario), "--db", str(db), "--resume", "latest", "--rollouts", "8")
    assert other_n.returncode == 2 and "--rollouts 16" in other_n.stderr and "--rollouts" in other_n.stderr
    assert _count(db, "SELECT count(*) FROM cells") == 5


@pytest.fixture(scope="module")
def concurrent_db(tiny_scenarios, tmp_path_factory, jax_cache_dir):
    """Three `rtcbench run` processes of one scenario into one file at the same time."""
    db = tmp_path_factory.mktemp("concurrent") / "shared.duckdb"
    procs = [_spawn(["run", str(tiny_scenarios / "gate.yaml"), "--db", str(db)], jax_cache_dir) for _ in range(3)]
    outputs = [p.communicate(timeout=550) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    return db


def test_concurrent_runs_lose_and_duplicate_nothing(concurrent_db):
    with read_only(concurrent_db) as conn:
        runs = conn.execute("SELECT run_id, status FROM runs").fetchall()
        assert len(runs) == 3 and {s for _, s in runs} == {"complete"}
        per_run = conn.execute("SELECT run_id, count(*), count(DISTINCT (level, method, setup)) FROM cells "
                               "GROUP BY run_id").fetchall()
        assert sorted(n for _, n, _ in per_run) == [2, 2, 2] and all(n == d for _, n, d in per_run)
        assert conn.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 3 * 2 * 16
        orphans = conn.execute("SELECT count(*) FROM rollouts WHERE cell_id NOT IN (SELECT cell_id FROM cells)")
        assert orphans.fetchone()[0] == 0
        # every cell holds its schedule's inferences; the same setup has the same delays in every run
        delays = conn.execute("SELECT setup, count(*), sum(d) FROM v_delays GROUP BY run_id, setup").fetchall()
        assert len(delays) == 6 and len({row for row in delays}) == 2
        # provenance is filled
        prov = conn.execute("SELECT jax_backend, jax_version, kinetix_version, duckdb_version, host, git_commit, "
                            "wall_s, compile_s FROM runs").fetchall()
        assert all(v is not None for row in prov for v in row[:5]) and all(row[6] > 0 for row in prov)


def test_identical_real_runs_compare_clean(concurrent_db):
    with read_only(concurrent_db) as conn:
        run_a, run_b = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY run_id LIMIT 2").fetchall()]
        # same seeds, same scenario: the per-rollout results are bit-identical across processes
        diff = conn.execute("""
            SELECT count(*) FROM v_rollouts a JOIN v_rollouts b USING (comparability_key, rollout)
            WHERE a.run_id = ? AND b.run_id = ? AND (a.solved != b.solved OR a.jerk_max_d2 != b.jerk_max_d2
                  OR a.episode_return != b.episode_return)""", [run_a, run_b]).fetchone()[0]
        assert diff == 0
    proc = cli_here("compare", "--baseline", run_a, "--candidate", run_b, "--db", str(concurrent_db), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {c["outcome"] for c in json.loads(proc.stdout)["cells"]} == {"not significant"}


def test_report_from_a_real_run(concurrent_db, tmp_path):
    out = tmp_path / "report"
    proc = cli_here("report", "--db", str(concurrent_db), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    for png in ("solve_rate.png", "jerk.png", "delay_survival.png", "violations_stalls.png"):
        assert (out / png).stat().st_size > 5000 and f"]({png})" in text
    assert "## Solve rate" in text and "store_gate" in text and "Wilson 95%" in text
    with read_only(concurrent_db) as conn:
        p95 = conn.execute("SELECT d_p95 FROM cells WHERE setup = 'spiky' LIMIT 1").fetchone()[0]
    assert "| spiky | " in text and format(p95, ".3g") in text


# Recorded on CPU (jax 0.9.0, kinetix-env 3.0.2) with policies/s_h8_unicycle_balance/bc.msgpack
# (sha256 7a43dc62...), 16 rollouts x 32 steps, seeds 0, fixed2 / spiky: solve 1.0 / 1.0; on the level's used
# action dimension (schema v5, 2026-12-06): jerk_max_d1 0.457 / 0.405, jerk_max_d2 0.663 / 0.538,
# jerk_mean_d2 0.165 / 0.159; on all six dimensions: jerk_all_max_d1 0.714 / 0.572, jerk_all_max_d2
# 1.120 / 0.862. The bands tolerate a couple of flipped rollouts and the float differences of another backend;
# the delay statistics are numpy on the host and must match (schedule version 2, rollout-keyed delay streams:
# 0.2029 violations and 0.0664 stall fraction; version 1's single block of draws gave 0.2462 and 0.0879).
GATE_BANDS = {
    "fixed2": {"solve_rate": (0.8, 1.0), "jerk_max_d1": (0.35, 0.57), "jerk_max_d2": (0.50, 0.83),
               "jerk_mean_d2": (0.12, 0.21), "jerk_all_max_d1": (0.55, 0.90), "jerk_all_max_d2": (0.85, 1.40),
               "violation_rate": (0.0, 0.0), "stall_frac": (0.0, 0.0), "d_p95": (2.0, 2.0)},
    "spiky": {"solve_rate": (0.8, 1.0), "jerk_max_d1": (0.30, 0.51), "jerk_max_d2": (0.40, 0.68),
              "jerk_mean_d2": (0.12, 0.20), "jerk_all_max_d1": (0.45, 0.77), "jerk_all_max_d2": (0.70, 1.15),
              "violation_rate": (0.20289, 0.20290), "stall_frac": (0.066406, 0.066407), "d_p95": (6.0, 6.0)},
}


def test_quality_gate_solve_rate_and_jerk_bands(concurrent_db):
    with read_only(concurrent_db) as conn:
        frame = conn.execute("SELECT * FROM v_cells WHERE scenario = 'store_gate'").df()
    assert len(frame) == 6
    failures = []
    for _, row in frame.iterrows():
        for metric, (low, high) in GATE_BANDS[row["setup"]].items():
            value = float(row[metric])
            if not low - 1e-9 <= value <= high + 1e-9:
                failures.append(f"{row['setup']}.{metric} = {value:.6g} outside [{low}, {high}] (run {row['run_id']})")
    assert not failures, "quality gate failed:\n" + "\n".join(failures)


def test_second_run_loads_its_episode_from_the_compile_cache(tiny_scenarios, tmp_path):
    """JAX's persistent cache under --compile-cache: the first run compiles and writes, the second loads
    (a hit, and less time than compiling); --no-compile-cache neither reads nor writes it."""
    scenario = tmp_path / "one.yaml"
    scenario.write_text(scenario_yaml("store_cache", GATE_SETUPS.split("  - name: spiky")[0], rollouts=4,
                                      max_steps=16))
    cache = tmp_path / "cache"

    def run(*extra):
        proc = cli("run", str(scenario), "--db", str(tmp_path / "r.duckdb"), *extra, env={"RTCBENCH_COMPILE_CACHE": ""})
        assert proc.returncode == 0, proc.stderr
        line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("compile cache:"))
        compile_s = float(re.search(r"compile ([0-9.]+) s", proc.stderr).group(1))
        return line, compile_s

    first, first_s = run("--compile-cache", str(cache))
    assert first.startswith("compile cache: 0 hits") and any(cache.iterdir())
    second, second_s = run("--compile-cache", str(cache))
    hits = int(re.search(r"(\d+) hits", second).group(1))
    assert hits >= 1 and second_s < first_s, (first, first_s, second, second_s)
    n_files = len(list(cache.iterdir()))
    off, _ = run("--no-compile-cache")
    assert off == "compile cache: off (--no-compile-cache)" and len(list(cache.iterdir())) == n_files
