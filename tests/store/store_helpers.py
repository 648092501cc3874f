"""Helpers for the store tests: the real CLI in a subprocess or in this process, and runs written through the
store API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from rtcbench.stats import wilson_interval
from rtcbench.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None, timeout: float = 600, cwd: str | os.PathLike | None = None):
    """Run `rtcbench ARGS` in a fresh interpreter -> CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.pop("RTCBENCH_DB", None)
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "rtcbench.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or REPO_ROOT)


def cli_here(*args: str, env: dict | None = None, **_ignored) -> subprocess.CompletedProcess:
    """Run `rtcbench ARGS` in this process through the real entry point -> CompletedProcess (text), like
    `cli` without a fresh interpreter: it shares this process's compiled episodes, so a test that is not
    about process behaviour (kill, signals, locks, forced devices, Ray) does not import JAX and compile again.
    `env` is set for the call and restored after it."""
    import contextlib
    import io

    from rtcbench.cli.main import main

    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(["rtcbench", *args], code, out.getvalue(), err.getvalue())


def rollout_columns(solved, jerk_d1=None, jerk_d2=None) -> dict[str, np.ndarray]:
    """Per-rollout rows for the store from solves [B] and jerks [B]; other columns are plain counts."""
    solved = np.asarray(solved, dtype=bool)
    n = solved.size
    jerk_d1 = np.full(n, 0.5) if jerk_d1 is None else np.asarray(jerk_d1, float)
    jerk_d2 = np.full(n, 0.8) if jerk_d2 is None else np.asarray(jerk_d2, float)
    return {
        "solved": solved,
        "episode_return": np.where(solved, 1.0, 0.2),
        "episode_length": np.full(n, 25, np.int32),
        "jerk_max_d1": jerk_d1,
        "jerk_mean_d1": jerk_d1 / 4,
        "jerk_max_d2": jerk_d2,
        "jerk_mean_d2": jerk_d2 / 4,
        # all action dims: the used dims' values plus as much again from unused ones
        "jerk_all_max_d1": 2 * jerk_d1,
        "jerk_all_mean_d1": jerk_d1 / 2,
        "jerk_all_max_d2": 2 * jerk_d2,
        "jerk_all_mean_d2": jerk_d2 / 2,
        "stall_steps": np.zeros(n, np.int32),
        "wall_steps": np.full(n, 32, np.int32),
        "n_inferences": np.full(n, 8, np.int32),
        "nfe": np.full(n, 40, np.int64),
        "vjp": np.zeros(n, np.int64),
    }


def cell_row(run_id: str, *, level: str, method: str, setup: str, key: str, solved) -> dict:
    solved = np.asarray(solved, dtype=bool)
    n = int(solved.size)
    low, high = wilson_interval(int(solved.sum()), n) if n else (None, None)
    return {
        "run_id": run_id, "config_hash": "cfg-" + key, "comparability_key": key, "scenario": "store_test",
        "level": level, "method": method, "setup": setup, "n_rollouts": n, "chunk_size": 8, "flow_steps": 5,
        "dt_ms": 33.3, "max_steps": 32, "solve_rate": float(solved.mean()) if n else None,
        "solve_ci_low": low, "solve_ci_high": high,
    }


def write_run(store: Store, cells: list[dict], *, status: str = "complete") -> str:
    """Write a run through the store API. cells: dicts with level, method, setup, key, solved, optional jerks
    (jerk_d1, jerk_d2), seeds ({"env": .., "delay": ..}) and more cell_config (a dict), stored in cell_config
    like `rtcbench run` does; optional "cell" (more cells-table columns, e.g. rates or inference_ms) and
    "inferences" (per-inference columns, `schema.INFERENCE_COLUMNS`)."""
    run_id = store.create_run({"scenario": "store_test", "config_hash": "cfg", "n_cells_planned": len(cells)})
    for spec in cells:
        row = cell_row(run_id, level=spec["level"], method=spec["method"], setup=spec["setup"], key=spec["key"],
                       solved=spec["solved"])
        if "seeds" in spec or "cell_config" in spec:
            row["cell_config"] = {"seeds": spec.get("seeds")} | spec.get("cell_config", {})
        row.update(spec.get("cell", {}))
        store.write_cell(
            row,
            rollout_columns(spec["solved"], spec.get("jerk_d1"), spec.get("jerk_d2")),
            spec.get("inferences"),
        )
    if status != "running":
        store.finish_run(run_id, status=status, wall_s=1.0, compile_s=0.0)
    return run_id


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """`rtcbench ARGS` in this process through the real entry point -> (exit code, stdout, stderr)."""
    from rtcbench.cli.main import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


HOLD_LOCK = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM runs").fetchall()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
"""


def hold_lock(path, seconds: float) -> subprocess.Popen:
    """Another process holding the DuckDB file's lock for `seconds`; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc
