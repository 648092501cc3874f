"""`rtcbench bench-sweep`: what the executor and the compile cache buy on a whole scenario (issue #15).

One command times the same scenario several ways, each in a fresh ``rtcbench run`` process with its own
DuckDB file, so that nothing compiled in one run is still in memory for the next:

    local, cold   --executor local, an empty persistent compile cache (folder A)
    local, warm   --executor local, folder A again (now holding every episode the cold run compiled)
    ray           --executor ray --workers N --cpus-per-worker C on a Ray instance the run starts itself,
                  with an empty cache of its own (folder B; ``--ray-cache warm``: folder A)

and prints one JSON line with, per run, the process's wall seconds (start to exit, what a user waits:
imports, Ray start-up and shutdown included), the run's own ``runs.wall_s`` and ``runs.compile_s`` (for Ray,
summed over workers), and two ratios:

    ray_over_local_wall     ray process wall / local cold process wall   (both compile from empty caches)
    warm_over_cold_compile  local warm runs.compile_s / local cold runs.compile_s

``metrics_equal`` says whether the three runs stored the same rollouts (every column of the ``rollouts``
table), which is what makes the timings comparable at all. A run that fails stops the benchmark with
its log's path. Nothing is written outside the work folder (a temporary one unless ``--keep DIR``), except
the JSON line appended to ``--out`` when given.

What a warm run still pays per compile group (measured on 2 CPU cores): tracing the episode in Python and
lowering it to StableHLO (about 2 s together), which JAX's cache cannot skip because its key is a hash of the
lowered program, and loading the cached executable (about 1 s).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rtcbench.errors import UserError


def _rollout_metrics() -> list[str]:
    """Every per-rollout metric the store keeps (the `rollouts` table less its key; it holds no timings):
    equal across executors and caches (tests/store/test_executors.py)."""
    from rtcbench.store.schema import rollouts

    return [c.name for c in rollouts.columns if c.name not in ("cell_id", "rollout")]


@dataclass
class TimedRun:
    label: str
    executor: str
    cache: str  # the cache folder's name: cache_local (empty before the cold run) or cache_ray (empty)
    process_wall_s: float
    wall_s: float  # runs.wall_s
    compile_s: float  # runs.compile_s (Ray: summed over workers)
    cells: int
    rollouts: int
    run_id: str
    log: str


def _command(scenario: Path, db: Path, cache: Path, rollouts: int | None, sets: list[str],
             executor: str, workers: int, cpus_per_worker: int) -> list[str]:
    cmd = [sys.executable, "-m", "rtcbench.cli.main", "run", str(scenario), "--db", str(db),
           "--compile-cache", str(cache), "--executor", executor]
    if rollouts is not None:
        cmd += ["--rollouts", str(rollouts)]
    for item in sets:
        cmd += ["--set", item]
    if executor == "ray":
        cmd += ["--workers", str(workers), "--cpus-per-worker", str(cpus_per_worker)]
    return cmd


def _read_run(db: Path) -> tuple[dict, list[tuple]]:
    """The one run in db: its runs row, and every rollout's metrics in cell and rollout order."""
    from rtcbench.store import read_only

    with read_only(db) as conn:
        run_id, status, wall_s, compile_s = conn.execute(
            "SELECT run_id, status, wall_s, compile_s FROM runs").fetchone()
        rows = conn.execute(
            f"SELECT level, method, setup, rollout, {', '.join(_rollout_metrics())} FROM v_rollouts "
            "WHERE run_id = ? ORDER BY level, method, setup, rollout", [run_id]).fetchall()
        cells = conn.execute("SELECT count(*) FROM cells WHERE run_id = ?", [run_id]).fetchone()[0]
    return {"run_id": run_id, "status": status, "wall_s": float(wall_s), "compile_s": float(compile_s),
            "cells": int(cells)}, rows


def timed_run(label: str, scenario: Path, work: Path, cache: Path, *, executor: str, rollouts: int | None,
              sets: list[str], workers: int, cpus_per_worker: int, log=print) -> tuple[TimedRun, list[tuple]]:
    """One `rtcbench run` in a fresh process; its timings from the clock and from its runs row."""
    slug = label.replace(" ", "_").replace(",", "")
    db, log_path = work / f"{slug}.duckdb", work / f"{slug}.log"
    cmd = _command(scenario, db, cache, rollouts, sets, executor, workers, cpus_per_worker)
    log(f"bench-sweep: {label}: {' '.join(cmd[1:])}")
    env = {k: v for k, v in os.environ.items() if k not in ("RTCBENCH_DB", "RTCBENCH_COMPILE_CACHE")}
    t0 = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    process_wall = time.perf_counter() - t0
    if proc.returncode != 0 or not db.exists():
        raise RuntimeError(f"the {label} run exited {proc.returncode}; its output is in {log_path}")
    run, rows = _read_run(db)
    if run["status"] != "complete":
        raise RuntimeError(f"the {label} run ended {run['status']!r}; its output is in {log_path}")
    timed = TimedRun(label=label, executor=executor, cache=cache.name, process_wall_s=process_wall,
                     wall_s=run["wall_s"], compile_s=run["compile_s"], cells=run["cells"], rollouts=len(rows),
                     run_id=run["run_id"], log=str(log_path))
    log(f"bench-sweep: {label}: {process_wall:.1f} s in all, run {run['wall_s']:.1f} s, compile "
        f"{run['compile_s']:.1f} s, {run['cells']} cells, {len(rows)} rollouts")
    return timed, rows


def bench_sweep(scenario: Path, *, rollouts: int | None = None, sets: list[str] | None = None, workers: int = 2,
                cpus_per_worker: int = 1, ray_cache: str = "cold", keep: Path | None = None, log=print) -> dict:
    """Run the three timed runs (module docstring) and return the JSON-ready result."""
    from rtcbench.executors import import_ray

    if ray_cache not in ("cold", "warm"):
        raise UserError(f"must be cold or warm, got {ray_cache!r}", field="--ray-cache")
    if workers < 1 or cpus_per_worker < 1:
        raise UserError("must be >= 1", field="--workers" if workers < 1 else "--cpus-per-worker")
    scenario = Path(scenario)
    if not scenario.is_file():
        raise UserError("no such scenario file", path=str(scenario))
    from rtcbench.scenario import Scenario

    Scenario.from_yaml(scenario, sets=sets)  # bad input fails here, before any process starts
    import_ray()
    sets = list(sets or [])
    work = Path(tempfile.mkdtemp(prefix="rtcbench-bench-sweep-")) if keep is None else Path(keep)
    if keep is not None:
        if work.exists() and any(work.iterdir()):
            raise UserError("must be an empty or new folder (the benchmark needs empty caches)", path=str(work),
                            field="--keep")
        work.mkdir(parents=True, exist_ok=True)
    cache_a, cache_b = work / "cache_local", work / "cache_ray"
    common = {"rollouts": rollouts, "sets": sets, "workers": workers, "cpus_per_worker": cpus_per_worker, "log": log}
    try:
        cold, cold_rows = timed_run("local, cold", scenario, work, cache_a, executor="local", **common)
        warm, warm_rows = timed_run("local, warm", scenario, work, cache_a, executor="local", **common)
        ray_label = f"ray x{workers}, {ray_cache}"
        ray, ray_rows = timed_run(ray_label, scenario, work, cache_a if ray_cache == "warm" else cache_b,
                                  executor="ray", **common)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    from rtcbench import __version__
    from rtcbench.provenance import git_state

    commit, dirty = git_state()
    ray_reference = cold if ray_cache == "cold" else warm
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rtcbench_version": __version__,
        "git_commit": commit, "git_dirty": dirty, "scenario": str(scenario), "rollouts_override": rollouts,
        "sets": sets, "cpu_count": os.cpu_count(), "workers": workers, "cpus_per_worker": cpus_per_worker,
        "ray_cache": ray_cache,
        "ray_over_local_wall": round(ray.process_wall_s / ray_reference.process_wall_s, 3),
        "ray_over_local_run_wall": round(ray.wall_s / ray_reference.wall_s, 3),
        "warm_over_cold_compile": round(warm.compile_s / cold.compile_s, 3) if cold.compile_s > 0 else None,
        "metrics_equal": cold_rows == warm_rows == ray_rows and len(cold_rows) > 0,
        "runs": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(t).items()
                  if k != "log" or keep is not None} for t in (cold, warm, ray)],
    }
