"""How a run is executed must not change what it measures (issue #15): `--only`, `--rollout-shards`,
`--devices` and `--executor ray` against a plain local run of the same tiny scenario, row for row.

Real engine, shipped policy. The runs run in this process (`cli_here`), sharing its compiled episodes;
forced host devices, Ray and bench-sweep need processes of their own (`cli`), which share the session's
persistent compile cache. A shard (8 of 16 rollouts) and a 2-device program each compile once more.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from store_helpers import cli, cli_here
from store_scenarios import SPIKY_SETUP, scenario_yaml

from rtcbench.errors import UserError
from rtcbench.executors import shard_bounds
from rtcbench.plan import parse_only
from rtcbench.scenario import Scenario
from rtcbench.store import read_only

SPIKY = SPIKY_SETUP + """
  - name: fixed3
    profile: {kind: fixed, d: 3}
    forecaster: {kind: fixed, d: 3}
    horizon: {kind: fixed_clock, s: 3}
"""
ROLLOUT_COLUMNS = ("rollout, solved, episode_return, episode_length, jerk_max_d1, jerk_mean_d1, jerk_max_d2, "
                   "jerk_mean_d2, jerk_all_max_d1, jerk_all_mean_d2, stall_steps, wall_steps, n_inferences, nfe, vjp")


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("exec") / "exec.yaml"
    path.write_text(scenario_yaml("store_executors", SPIKY, methods="[{kind: naive}, {kind: rtc}]"))
    return path


def _env(jax_cache_dir, **extra) -> dict:
    return {"JAX_COMPILATION_CACHE_DIR": str(jax_cache_dir), **extra}


def _rows(db, run_id=None):
    """Every rollout row of one run (the only one when run_id is None), in cell and rollout order."""
    with read_only(db) as conn:
        run_id = run_id or conn.execute("SELECT run_id FROM runs").fetchone()[0]
        return conn.execute(
            f"SELECT level, method, setup, {ROLLOUT_COLUMNS} FROM v_rollouts WHERE run_id = ? "
            "ORDER BY level, method, setup, rollout", [run_id]).fetchall()


def _run_row(db):
    with read_only(db) as conn:
        return conn.execute("SELECT status, n_cells_planned, device_count, executor, rollout_shards, cell_filter "
                            "FROM runs").fetchall()


@pytest.fixture(scope="module")
def whole_run(scenario_file, tmp_path_factory, jax_cache_dir):
    db = tmp_path_factory.mktemp("whole") / "r.duckdb"
    proc = cli_here("run", str(scenario_file), "--db", str(db), env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr
    assert _run_row(db) == [("complete", 4, 1, "local", 1, None)]
    with read_only(db) as conn:  # every cell's timed inference calls: the median inside its p10-p90 range
        assert conn.execute("SELECT count(*) FROM cells WHERE inference_ms_p10 > 0 AND inference_ms_p10 <= "
                            "inference_ms AND inference_ms <= inference_ms_p90").fetchone()[0] == 4
    return db


def test_parse_only_and_shard_bounds(scenario_file):
    scenario = Scenario.from_yaml(scenario_file)
    cells = list(scenario.cells())
    keep = parse_only("method=rtc*,setup=spiky,setup=fixed3", scenario)
    assert [c.key for c in cells if keep(c)] == [c.key for c in cells if c.method.label.startswith("rtc")]
    for bad, said in (("setup=nope", "matches nothing"), ("flavour=x", "KEY one of"), ("setup", "KEY=VALUE"),
                      ("method=", "KEY=VALUE")):
        with pytest.raises(UserError, match=said):
            parse_only(bad, scenario)
    assert shard_bounds(16, 2) == [(0, 8), (8, 16)] and shard_bounds(16, 2, devices=2) == [(0, 8), (8, 16)]
    for n, shards, devices in ((16, 3, 1), (16, 4, 8), (16, 0, 1)):
        with pytest.raises(UserError):
            shard_bounds(n, shards, devices)


def test_the_ray_queue_starts_the_costliest_group_first_and_keeps_a_worker_on_its_group():
    from rtcbench.executors import Shard, ShardQueue, shard_work
    from rtcbench.methods.config import BIDMethod, NaiveMethod, RTCMethod

    methods = {"naive": NaiveMethod(), "rtc": RTCMethod(), "bid": BIDMethod(n_samples=16)}
    work = {name: shard_work(m, 128) for name, m in methods.items()}
    assert work["bid"] > work["rtc"] > work["naive"] > 0  # 16 forward passes > 1 forward + 1 VJP > 1 forward
    assert shard_work(methods["naive"], 256) == 2 * work["naive"]
    shards = [Shard(i, ("L", name, setup), ("L", name), lo, lo + 128, lo == 0, work=work[name])
              for i, (name, setup) in enumerate((n, s) for n in methods for s in ("a", "b")) for lo in (0, 128)]
    queue = ShardQueue(shards, workers=2)
    # the costliest group first, the next costliest to the other worker: rtc (one forward pass and one VJP
    # per Euler step) before naive (one forward pass), though both have 4 shards
    assert (queue.next_for(0).group[1], queue.next_for(1).group[1]) == ("bid", "rtc")
    # a worker stays on its group until it is done, then takes the untouched group with the most work
    assert [queue.next_for(1).group[1] for _ in range(4)] == ["rtc", "rtc", "rtc", "naive"]
    # once every group is started, an idle worker joins the one with the most work left: worker 1 finishes
    # naive, then joins bid (3 shards left; worker 0 is still on its first), and stays on it
    assert [queue.next_for(1).group[1] for _ in range(4)] == ["naive", "naive", "naive", "bid"]
    handed = [queue.next_for(w) for w in (0, 1, 0)]
    assert [sh.group[1] if sh else None for sh in handed] == ["bid", "bid", None]
    assert not queue and queue.next_for(0) is None


@pytest.mark.slow
def test_only_runs_the_matching_cells_and_resume_keeps_the_filter(whole_run, scenario_file, tmp_path, jax_cache_dir):
    db = tmp_path / "only.duckdb"
    proc = cli_here("run", str(scenario_file), "--db", str(db), "--only", "setup=spiky", env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr
    assert _run_row(db) == [("complete", 2, 1, "local", 1, "setup=spiky")]
    rows = _rows(db)
    assert {r[2] for r in rows} == {"spiky"} and rows == [r for r in _rows(whole_run) if r[2] == "spiky"]
    with read_only(db) as conn:
        run_id = conn.execute("SELECT run_id FROM runs").fetchone()[0]
    refused = cli_here("run", str(scenario_file), "--db", str(db), "--resume", run_id, "--only", "setup=fixed3")
    assert refused.returncode == 2 and "setup=spiky" in refused.stderr and "Traceback" not in refused.stderr
    again = cli_here("run", str(scenario_file), "--db", str(db), "--resume", run_id, env=_env(jax_cache_dir))
    assert again.returncode == 0 and "already complete" in again.stderr, again.stderr
    for bad in ("setup=nope", "colour=red"):
        proc = cli_here("run", str(scenario_file), "--db", str(tmp_path / "bad.duckdb"), "--only", bad)
        assert proc.returncode == 2 and "--only" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "bad.duckdb").exists()


@pytest.mark.slow
def test_set_overrides_are_recorded_hashed_and_re_applied_on_resume(whole_run, scenario_file, tmp_path, jax_cache_dir):
    db = tmp_path / "set.duckdb"
    sets = ["setups[0].profile.p_spike=0.6", "rollouts=16"]
    proc = cli_here("run", str(scenario_file), "--db", str(db), "--only", "setup=spiky,method=naive",
               *[a for s in sets for a in ("--set", s)], env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr
    with read_only(db) as conn:
        run_id, overrides, config_hash = conn.execute("SELECT run_id, overrides, config_hash FROM runs").fetchone()
        spikes = conn.execute("SELECT avg((d >= 6)::INT) FROM v_delays").fetchone()[0]
    with read_only(whole_run) as conn:
        whole_hash = conn.execute("SELECT config_hash FROM runs").fetchone()[0]
        whole_spikes = conn.execute("SELECT avg((d >= 6)::INT) FROM v_delays WHERE setup = 'spiky' "
                                    "AND method = 'naive'").fetchone()[0]
    assert json.loads(overrides) == sets and config_hash != whole_hash
    assert spikes > whole_spikes + 0.2  # p_spike 0.6 instead of the file's 0.2 reached the schedule
    refused = cli_here("run", str(scenario_file), "--db", str(db), "--resume", run_id, "--set", "rollouts=16")
    assert refused.returncode == 2 and "p_spike=0.6" in refused.stderr and "Traceback" not in refused.stderr
    again = cli_here("run", str(scenario_file), "--db", str(db), "--resume", run_id, env=_env(jax_cache_dir))
    assert again.returncode == 0 and "already complete" in again.stderr, again.stderr
    bad_db = tmp_path / "bad.duckdb"
    for bad, said in (("setups[0].profile.p_spik=0.5", "did you mean 'p_spike'"), ("setups[7].x=1", "out of range")):
        proc = cli_here("run", str(scenario_file), "--db", str(bad_db), "--set", bad)
        assert proc.returncode == 2 and said in proc.stderr and "--set" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not bad_db.exists()


@pytest.mark.slow
def test_rollout_shards_reassemble_the_whole_cells(whole_run, scenario_file, tmp_path, jax_cache_dir):
    db = tmp_path / "shards.duckdb"
    proc = cli_here("run", str(scenario_file), "--db", str(db), "--rollout-shards", "2", env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr
    assert _run_row(db) == [("complete", 4, 1, "local", 2, None)]
    assert _rows(db) == _rows(whole_run)  # bit-identical, every rollout of every cell
    with read_only(db) as sharded, read_only(whole_run) as whole:
        query = ("SELECT level, method, setup, n_rollouts, solve_rate, jerk_max_d2, d_p95, violation_rate, "
                 "stall_frac FROM cells ORDER BY level, method, setup")
        assert sharded.execute(query).fetchall() == whole.execute(query).fetchall()
        n_inf = "SELECT count(*), sum(d), sum(dhat) FROM inferences"
        assert sharded.execute(n_inf).fetchall() == whole.execute(n_inf).fetchall()
    proc = cli_here("run", str(scenario_file), "--db", str(tmp_path / "odd.duckdb"), "--rollout-shards", "3")
    assert proc.returncode == 2 and "--rollout-shards" in proc.stderr and not (tmp_path / "odd.duckdb").exists()


@pytest.mark.slow
@pytest.mark.heavy
def test_devices_are_asked_for_and_give_the_same_rollouts(whole_run, scenario_file, tmp_path, jax_cache_dir):
    proc = cli("run", str(scenario_file), "--db", str(tmp_path / "one.duckdb"), "--devices", "2")
    assert proc.returncode == 2 and "JAX sees 1" in proc.stderr and not (tmp_path / "one.duckdb").exists()
    db = tmp_path / "two.duckdb"
    forced = _env(jax_cache_dir, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                                            " --xla_force_host_platform_device_count=2").strip())
    proc = cli("run", str(scenario_file), "--db", str(db), "--devices", "2", "--only", "setup=spiky", env=forced)
    assert proc.returncode == 0, proc.stderr
    assert _run_row(db) == [("complete", 2, 2, "local", 1, "setup=spiky")]
    assert _rows(db) == [r for r in _rows(whole_run) if r[2] == "spiky"]


@pytest.mark.slow
@pytest.mark.heavy
def test_ray_on_two_levels_matches_local_and_compiles_each_group_once_per_worker(tmp_path, jax_cache_dir):
    """Issue #15's done-when: 2 levels x 2 methods x 2 setups at --rollouts 8, each cell in 2 shards, on a local
    2-worker Ray cluster (the module's one Ray cluster): every stored metric equals the local executor's, and each worker compiled each (level, method)
    group it ran exactly once (its log line: groups = episode compilations)."""
    pytest.importorskip("ray")
    import re

    path = tmp_path / "two_levels.yaml"
    text = scenario_yaml("store_two_levels", SPIKY, methods="[{kind: naive}, {kind: rtc}]")
    path.write_text(text.replace("levels: [s/h8_unicycle_balance]", "levels: [s/h8_unicycle_balance, s/h5_rotate_fall]"))
    local, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    proc = cli_here("run", str(path), "--db", str(local), "--rollouts", "8", env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cli("run", str(path), "--db", str(ray_db), "--rollouts", "8", "--executor", "ray", "--workers", "2",
               "--cpus-per-worker", "1", "--rollout-shards", "2",
               env=_env(jax_cache_dir, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _run_row(ray_db) == [("complete", 8, 1, "ray", 2, None)]
    with read_only(ray_db) as conn:  # one row per cell, whatever order the shards came back in
        assert conn.execute("SELECT count(*), count(DISTINCT cell_id) FROM cells").fetchone() == (8, 8)
    rows = _rows(ray_db)
    assert len(rows) == 8 * 8 and {r[0] for r in rows} == {"s/h8_unicycle_balance", "s/h5_rotate_fall"}
    assert rows == _rows(local)
    stats = re.findall(r"ray worker \S+: (\d+) compile group\(s\), (\d+) episode compilation", proc.stderr)
    assert len(stats) == 2, proc.stderr[-3000:]
    assert sum(int(g) for g, _ in stats) >= 4  # the 4 (level, method) groups, each run by some worker
    assert all(int(groups) == int(compiles) for groups, compiles in stats), stats


@pytest.mark.slow
def test_render_re_simulates_a_stored_rollout(whole_run, tmp_path, jax_cache_dir):
    """`rtcbench render` recomputes rollout 5 of a stored cell in the batch the run computed it in (the whole
    cell here: one shard of 16), checks it against its stored row inside the command (return to the last
    bit) and writes one frame per step of its first episode."""
    from PIL import Image

    out = tmp_path / "r5.gif"
    proc = cli_here("render", "--db", str(whole_run), "--cell", "s/h8_unicycle_balance/naive/spiky", "--rollout", "5",
               "--out", str(out), "--device", "cpu", env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    stored = [r for r in _rows(whole_run) if r[1:4] == ("naive", "spiky", 5)][0]
    assert info["checked_against_store"] and info["shard"] == [0, 16] and info["replay_return_exact"]
    assert (info["solved"], info["return"], info["length"]) == (stored[4], stored[5], stored[6])
    with Image.open(out) as gif:
        assert gif.n_frames == info["frames"] == stored[6] and gif.width >= 512
    for args, said in ((("--cell", "s/h8_unicycle_balance/nope/spiky"), "has no cell"),
                       (("--cell", "s/h8_unicycle_balance/naive/spiky", "--rollout", "16"), "rollouts 0..15"),
                       (("--cell", "s/h8_unicycle_balance/naive/spiky", "--out", str(tmp_path / "x.avi")), ".gif"),
                       (("--cell", "s/h8_unicycle_balance/naive/spiky", "--scenario", str(tmp_path / "no.yaml")),
                        "no such file")):
        bad = cli_here("render", "--db", str(whole_run), *args, "--device", "cpu")
        assert bad.returncode == 2 and said in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-500:]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, jax_cache_dir):
    """A run where some rollouts fail: 25 steps leave the episodes that need 26 unfinished (the policy solves
    every rollout of the module's scenario in 25 or 26 steps). Run in 2 shards of 8 rollouts."""
    folder = tmp_path_factory.mktemp("mixed")
    path = folder / "mixed.yaml"
    path.write_text(scenario_yaml("store_mixed", SPIKY_SETUP + "\n", max_steps=25))
    db = folder / "r.duckdb"
    proc = cli_here("run", str(path), "--db", str(db), "--rollout-shards", "2", env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr
    assert _run_row(db) == [("complete", 1, 1, "local", 2, None)]
    outcomes = {bool(r[4]) for r in _rows(db) if r[3] >= 8}
    assert outcomes == {False, True}, "the test needs failed and solved rollouts in the second shard"
    return db


@pytest.mark.slow
def test_render_draws_failed_and_solved_rollouts_of_a_sharded_run(mixed_run, tmp_path, jax_cache_dir):
    """A failed and a solved rollout of the second shard [8, 16) of a 2-shard run, each re-simulated in that
    shard (the same batch of 8 the run used) and equal to its stored row: solve, length and return; the
    states drawn are replayed in that batch too and give the same float32 return."""
    from PIL import Image

    rows = [r for r in _rows(mixed_run) if r[3] >= 8]
    for want in (False, True):
        stored = next(r for r in rows if bool(r[4]) == want)
        out = tmp_path / f"r{stored[3]}.gif"
        proc = cli_here("render", "--db", str(mixed_run), "--cell", "s/h8_unicycle_balance/naive/spiky",
                        "--rollout", str(stored[3]), "--out", str(out), "--device", "cpu", env=_env(jax_cache_dir))
        assert proc.returncode == 0, proc.stderr[-2000:]
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        assert info["checked_against_store"] and info["shard"] == [8, 16] and info["replay_return_exact"]
        assert (info["solved"], info["return"], info["length"]) == (want, stored[5], stored[6])
        with Image.open(out) as gif:
            assert gif.n_frames == info["frames"] == stored[6]


@pytest.mark.slow
def test_report_videos_show_the_first_failed_and_solved_rollouts(mixed_run, tmp_path, jax_cache_dir):
    from PIL import Image

    out = tmp_path / "rep"
    proc = cli_here("report", "--db", str(mixed_run), "--out", str(out), "--videos", "1", "--video-cells",
                    "*/naive/spiky", "--device", "cpu", env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(mixed_run)
    expected = {}
    for outcome, want in (("failed", False), ("solved", True)):
        first = next(r for r in rows if bool(r[4]) == want)
        expected[f"s_h8_unicycle_balance_naive_spiky_{outcome}_r{first[3]}.gif"] = first[6]
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(expected)
    for name, length in expected.items():
        with Image.open(out / "videos" / name) as gif:
            assert gif.n_frames == length
    report = (out / "report.md").read_text()
    assert "## Rollout videos" in report and all(f"(videos/{name})" in report for name in expected)
    assert report.index("## Rollout videos") < report.index("## Provenance") and "not rendered" not in report
    for args, said in ((("--videos", "1", "--video-cells", "*/nope/*"), "matches"),
                       (("--video-cells", "*",), "needs --videos")):
        bad = cli_here("report", "--db", str(mixed_run), "--out", str(tmp_path / "bad"), *args)
        assert bad.returncode == 2 and said in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-500:]
        assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_rollout_whose_scenario_changed_or_moved_is_refused_by_render_and_listed_by_report(
        whole_run, scenario_file, tmp_path, jax_cache_dir):
    """The run's scenario file edited after the run (another config hash): `render` refuses the rollout and
    `report --videos` still writes the report, listing each rollout with the reason. The same file moved to
    another folder: `render` names `--scenario`, which renders it; `report` (which has no such option) lists
    the missing file without naming it."""
    made_here = tmp_path / "made_here.yaml"
    text = scenario_file.read_text()
    made_here.write_text(text)
    db = tmp_path / "r.duckdb"
    proc = cli_here("run", str(made_here), "--db", str(db), "--only", "method=naive,setup=spiky",
                    env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr
    cell = ["--cell", "s/h8_unicycle_balance/naive/spiky", "--rollout", "3", "--device", "cpu"]

    def report(name):
        proc = cli_here("report", "--db", str(db), "--out", str(tmp_path / name), "--videos", "1", "--device", "cpu",
                        env=_env(jax_cache_dir))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "--scenario" not in proc.stderr and "--rollout" not in proc.stderr, proc.stderr[-2000:]
        page = (tmp_path / name / "report.md").read_text()
        section = page[page.index("## Rollout videos"):page.index("## Provenance")]
        assert not list((tmp_path / name / "videos").iterdir()) and "(videos/" not in section
        first = _rows(db)[0]  # every rollout solves: the one picked is the first solved, rollout 0
        assert f"| s/h8_unicycle_balance/naive/spiky | 0 | solved | {first[6]} | not rendered: " in section, section
        assert "--scenario" not in section and "--rollout" not in section
        return section

    made_here.write_text(text.replace("env: 0", "env: 1"))  # another env seed: another config hash
    refused = cli_here("render", "--db", str(db), *cell, "--out", str(tmp_path / "x.gif"))
    assert refused.returncode == 2 and "changed since this run" in refused.stderr, refused.stderr[-500:]
    assert "--rollout" not in refused.stderr and not (tmp_path / "x.gif").exists()
    assert "changed since this run" in report("changed")

    elsewhere = tmp_path / "elsewhere" / "moved.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(text)
    made_here.unlink()
    refused = cli_here("render", "--db", str(db), *cell, "--out", str(tmp_path / "x.gif"))
    assert refused.returncode == 2 and "is not here" in refused.stderr and "--scenario" in refused.stderr
    assert "is not here" in report("moved")
    proc = cli_here("render", "--db", str(db), *cell, "--scenario", str(elsewhere), "--out", str(tmp_path / "r3.gif"),
                    env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    stored = [r for r in _rows(whole_run) if r[1:4] == ("naive", "spiky", 3)][0]
    assert (info["solved"], info["return"], info["frames"]) == (stored[4], stored[5], stored[6])


def test_render_captions_follow_the_schedule():
    """Frame captions come from the schedule: with d = 2 and s = 3 every inference starts 3 steps after the
    last and lands 2 steps later; a delay of 7 > H - s leaves the chunk exhausted: stall steps are marked."""
    from rtcbench.engine.render import captions
    from rtcbench.replay.horizon import FixedClockHorizon
    from rtcbench.replay.schedule import schedule_from_delays

    d = np.array([[2, 2, 7, 2, 2, 2, 2, 2, 2, 2]])
    sched = schedule_from_delays(d, d, horizon=FixedClockHorizon(s=3), H=8, max_steps=20)
    lines = captions(sched, 20, solved=False)
    assert len(lines) == 20 and lines[-1].endswith("episode ends: failed")
    for j in range(20):
        assert ("LANDS" in lines[j]) == bool(sched.arrive[0, j]), (j, lines[j])
        assert ("STALL" in lines[j]) == bool(sched.stall[0, j]), (j, lines[j])
    assert any("STALL" in line for line in lines)  # the 7-step delay runs the chunk out
    assert "chunk k=1 started at 3 (d=2, s=3), lands at 5" in lines[3]


@pytest.mark.slow
def test_a_smaller_run_is_the_first_rollouts_of_a_larger_one(whole_run, scenario_file, tmp_path, jax_cache_dir):
    """Rollout b depends on (seeds, b) only: every cell of a `--rollouts 8` run equals the first 8 rollouts of
    the 16-rollout run, rollout for rollout (solves, returns, lengths, jerk, stalls)."""
    db = tmp_path / "eight.duckdb"
    proc = cli_here("run", str(scenario_file), "--db", str(db), "--rollouts", "8", env=_env(jax_cache_dir))
    assert proc.returncode == 0, proc.stderr
    assert _rows(db) == [r for r in _rows(whole_run) if r[3] < 8]


@pytest.mark.slow
def test_merge_of_two_halves_equals_the_whole_run(whole_run, scenario_file, tmp_path, jax_cache_dir):
    """A scenario split with --only into two files and joined with `rtcbench merge` holds the same cells as one
    whole run (every column but run identity and timings) and the same rollouts."""
    halves = []
    for setup in ("spiky", "fixed3"):
        db = tmp_path / f"{setup}.duckdb"
        proc = cli_here("run", str(scenario_file), "--db", str(db), "--only", f"setup={setup}", env=_env(jax_cache_dir))
        assert proc.returncode == 0, proc.stderr
        halves.append(db)
    merged = tmp_path / "merged.duckdb"
    proc = cli_here("merge", *map(str, halves), "--into", str(merged))
    assert proc.returncode == 0, proc.stderr
    columns = ("level, method, setup, config_hash, comparability_key, n_rollouts, solve_rate, solve_ci_low, "
               "solve_ci_high, return_mean, length_mean, d_p50, d_p95, d_p99, d_max, dhat_p95, violation_rate, "
               "stall_frac, forecast_miss_rate, over_forecast_rate, mean_exec_horizon, jerk_max_d1, jerk_max_d2, "
               "jerk_mean_d1, jerk_mean_d2, nfe_per_inference, vjp_per_inference, nfe_per_env_step")
    query = f"SELECT {columns} FROM v_cells ORDER BY level, method, setup"
    with read_only(merged) as joined, read_only(whole_run) as whole:
        assert joined.execute(query).fetchall() == whole.execute(query).fetchall()
        assert joined.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    assert sorted(r for run in _run_ids(merged) for r in _rows(merged, run)) == sorted(_rows(whole_run))


def _run_ids(db):
    with read_only(db) as conn:
        return [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]


@pytest.mark.slow
@pytest.mark.heavy
def test_bench_sweep_times_three_runs_that_store_the_same_rollouts(scenario_file, tmp_path):
    """`rtcbench bench-sweep` (issue #15's benchmark): a cold local run, a warm one and a Ray run, each in
    its own process with its own DuckDB file; the warm run loads what the cold one compiled."""
    pytest.importorskip("ray")
    keep, out = tmp_path / "keep", tmp_path / "sweep.jsonl"
    proc = cli("bench-sweep", str(scenario_file), "--rollouts", "4", "--ray-cache", "warm", "--keep", str(keep),
               "--out", str(out), env={"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == result
    assert [r["label"] for r in result["runs"]] == ["local, cold", "local, warm", "ray x2, warm"]
    assert result["metrics_equal"] is True
    assert all(r["cells"] == 4 and r["rollouts"] == 16 for r in result["runs"])
    assert {r["cache"] for r in result["runs"]} == {"cache_local"}  # --ray-cache warm: one cache folder
    cold, warm, ray = result["runs"]
    assert cold["compile_s"] > 10  # two episodes compiled from nothing
    # the ratios are of unrounded seconds; the runs list shows them rounded to 0.01 s, so recomputing from
    # the list agrees to about 0.001 (an exact comparison failed on 76.54 / 20.66)
    assert result["warm_over_cold_compile"] < 0.5
    assert abs(result["warm_over_cold_compile"] - warm["compile_s"] / cold["compile_s"]) < 0.002
    assert abs(result["ray_over_local_wall"] - ray["process_wall_s"] / warm["process_wall_s"]) < 0.002
    for run in result["runs"]:  # each run's own file holds exactly its run
        assert (keep / Path(run["log"]).name).exists()
        with read_only(Path(run["log"]).with_suffix(".duckdb")) as conn:
            assert conn.execute("SELECT run_id, executor FROM runs").fetchall() == [(run["run_id"], run["executor"])]


def test_bench_sweep_refuses_bad_input_before_running_anything(scenario_file, tmp_path):
    keep = tmp_path / "keep"
    for args, field in ((["--ray-cache", "tepid"], "--ray-cache"), (["--workers", "0"], "--workers"),
                        (["--set", "rollouts=-3"], "--set")):
        proc = cli_here("bench-sweep", str(scenario_file), "--keep", str(keep), *args, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert field in proc.stderr and "Traceback" not in proc.stderr
        assert not keep.exists()
    proc = cli_here("bench-sweep", str(tmp_path / "missing.yaml"), timeout=120)
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr
