"""`rtcbench run`: every cell of a scenario through the engine, each finished cell into the store.

Order of work, so that bad input never leaves a row behind:
1. choose the JAX device (``--device gpu`` without a GPU is an error, never a silent CPU run);
2. check the database path, load and validate the scenario, load every level and policy (dims are
   checked) and build every schedule;
3. only then open the store, create the run row (status ``running``) or, with ``--resume``, check that
   the run exists and that its config hash is the scenario's;
4. for each missing cell: ``run_cell`` and write the cell, its rollouts and its per-inference delays in
   one short transaction;
5. mark the run ``complete`` (or ``failed`` with the error text on any exception or interrupt).

A process killed with SIGKILL leaves its run ``running`` with only whole cells; ``--resume RUN_ID``
adds the missing ones.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtcbench.device import DEVICES, select_device
from rtcbench.errors import UserError
from rtcbench.stats import wilson_interval


@dataclass
class PreparedCell:
    cell: object  # rtcbench.scenario.Cell
    level: object  # rtcbench.levels.Level
    policy: object  # LoadedPolicy (the method's own for ttrtc)
    weak_policy: object | None
    schedule: object  # rtcbench.replay.Schedule
    config_hash: str
    comparability_key: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.cell.key


@dataclass
class LoadedInputs:
    """Every level and checkpoint a scenario names, loaded and verified once."""

    levels: dict  # level name -> Level
    policies: dict  # checkpoint path -> LoadedPolicy

    def policy_for(self, scenario, cell, attr: str = "policy"):
        """The checkpoint a cell runs (`attr="policy"`: the method's own, else the scenario's) or its BID
        weak policy (`attr="weak_policy"`, None when the method has none)."""
        path = scenario.method_policy_path(cell.method, cell.level, attr)
        if path is None:
            if attr != "policy":
                return None
            path = scenario.policy_path(cell.level)
        return self.policies[path]


def load_inputs(scenario) -> LoadedInputs:
    """Load every level and checkpoint the scenario names and check them against each other: the level
    file parses, each checkpoint's sha256 matches its sidecar, its dims match the level and its H the
    scenario's. A problem is a UserError naming the scenario and its field (``levels[i]``, ``policy``,
    ``methods[i].policy``, ``methods[i].weak_policy``). Used by `rtcbench validate` and before a run."""
    from rtcbench.levels import load_level_or_user_error
    from rtcbench.policy.checkpoint import load_policy

    where = str(scenario.path) if scenario.path else "<scenario>"
    levels, policies = {}, {}
    for i, level in enumerate(scenario.levels):
        levels[level] = load_level_or_user_error(scenario.resolve_level(level), path=where, field=f"levels[{i}]")

    def check(path: Path, level: str, field: str) -> None:
        if path in policies:
            return
        try:
            loaded = load_policy(path, levels[level])
        except UserError as exc:
            raise UserError(f"checkpoint for level {level!r}: {exc}", path=where, field=field) from None
        if loaded.config.H != scenario.H:
            raise UserError(f"checkpoint {path} was trained with H={loaded.config.H} but the scenario sets "
                            f"H={scenario.H}", path=where, field=field)
        policies[path] = loaded

    for level in scenario.levels:
        check(scenario.policy_path(level), level, "policy")
        for i, method in enumerate(scenario.methods):
            for attr in ("policy", "weak_policy"):
                path = scenario.method_policy_path(method, level, attr)
                if path is not None:
                    check(path, level, f"methods[{i}].{attr}")
    return LoadedInputs(levels, policies)


def prepare(scenario, select=None) -> list[PreparedCell]:
    """Load levels and policies and build schedules for every cell (or the cells `select(cell)` keeps);
    raises UserError on bad input."""
    inputs = load_inputs(scenario)
    levels = inputs.levels
    schedules = {}
    prepared = []
    for cell in scenario.cells():
        if select is not None and not select(cell):
            continue
        policy = inputs.policy_for(scenario, cell)
        weak = inputs.policy_for(scenario, cell, "weak_policy")
        world_pauses = cell.method.kind == "sync"
        sched_key = (cell.setup.name, world_pauses)
        if sched_key not in schedules:
            schedules[sched_key] = scenario.build_schedule(cell.setup, world_pauses=world_pauses)
        prepared.append(PreparedCell(cell, levels[cell.level], policy, weak, schedules[sched_key],
                                     scenario.cell_config_hash(cell), scenario.cell_comparability_key(cell)))
    return prepared


ONLY_KEYS = ("level", "method", "setup")


def parse_only(text: str, scenario):
    """``--only level=L,method=M,setup=S`` -> a predicate on cells. Each value is an exact name or a
    shell pattern (``method=rtc*``); a key given twice keeps cells matching either value; keys combine
    with AND. A value matching nothing in the scenario is an error naming what exists."""
    from fnmatch import fnmatchcase

    wanted: dict[str, list[str]] = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in ONLY_KEYS or not value:
            raise UserError(f"expected comma-separated KEY=VALUE with KEY one of {', '.join(ONLY_KEYS)}, got "
                            f"{part!r}", field="--only")
        wanted.setdefault(key, []).append(value)
    names = {"level": list(scenario.levels), "method": [m.label for m in scenario.methods],
             "setup": [s.name for s in scenario.setups]}
    for key, values in wanted.items():
        for value in values:
            if not any(fnmatchcase(name, value) for name in names[key]):
                raise UserError(f"{key} {value!r} matches nothing in scenario {scenario.name}; it has: "
                                f"{', '.join(names[key])}", field="--only")

    def select(cell) -> bool:
        have = {"level": cell.level, "method": cell.method.label, "setup": cell.setup.name}
        return all(any(fnmatchcase(have[k], v) for v in vs) for k, vs in wanted.items())

    return select


def _nanmean(values) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return float(finite.mean()) if finite.size else None


def policy_summary(policy) -> dict:
    """What a cell records of its checkpoint's sidecar: path, kind, its data (experts, label) and its
    measured modality (`rtcbench policy modality`), so a study can relate results to policy properties."""
    meta = getattr(policy, "meta", {}) or {}
    modality = meta.get("modality")
    if isinstance(modality, dict):
        modality = {k: v for k, v in modality.items() if isinstance(v, dict) and "value" in v} | {
            k: modality[k] for k in ("n_obs", "m", "boundary_s") if k in modality}
    return {"path": str(getattr(policy, "path", "")), "kind": meta.get("kind"), "data": meta.get("data"),
            "modality": modality, "solve_rate_d0": (meta.get("solve_rate") or {}).get("rate")}


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def cell_rows(scenario, prep: PreparedCell, out, run_id: str) -> tuple[dict, dict, dict]:
    """CellOutput + schedule -> (cells row, rollouts columns, inferences columns)."""
    per = out.per_rollout
    solved = np.asarray(per["solved"], dtype=bool)
    n = int(solved.size)
    low, high = wilson_interval(int(solved.sum()), n)
    stats = prep.schedule.stats
    wall_steps = float(np.asarray(per["wall_steps"]).sum())
    cell = prep.cell
    row = {
        "run_id": run_id,
        "config_hash": prep.config_hash,
        "comparability_key": prep.comparability_key,
        "scenario": scenario.name,
        "level": cell.level,
        "method": cell.method.label,
        "setup": cell.setup.name,
        "n_rollouts": n,
        "chunk_size": scenario.H,
        "flow_steps": scenario.flow_steps,
        "dt_ms": scenario.dt_ms,
        "max_steps": scenario.max_steps,
        "solve_rate": float(solved.mean()),
        "solve_ci_low": low,
        "solve_ci_high": high,
        "return_mean": float(np.mean(per["return"])),
        "length_mean": float(np.mean(per["length"])),
        "solves_per_1000_wall_steps": 1000.0 * float(solved.sum()) / wall_steps if wall_steps > 0 else None,
        "d_p50": _finite_or_none(stats.d_p50),
        "d_p95": _finite_or_none(stats.d_p95),
        "d_p99": _finite_or_none(stats.d_p99),
        "d_max": _finite_or_none(stats.d_max),
        "dhat_p50": _finite_or_none(stats.dhat_p50),
        "dhat_p95": _finite_or_none(stats.dhat_p95),
        "dhat_p99": _finite_or_none(stats.dhat_p99),
        "violation_rate": _finite_or_none(stats.violation_rate),
        "stall_frac": _finite_or_none(stats.stall_fraction),
        "forecast_miss_rate": _finite_or_none(stats.forecast_miss_rate),
        "over_forecast_rate": _finite_or_none(stats.over_forecast_rate),
        "mean_exec_horizon": _finite_or_none(stats.mean_execution_horizon),
        "jerk_max_d1": _nanmean(per["jerk_max_d1"]),
        "jerk_max_d2": _nanmean(per["jerk_max_d2"]),
        "jerk_mean_d1": _nanmean(per["jerk_mean_d1"]),
        "jerk_mean_d2": _nanmean(per["jerk_mean_d2"]),
        "nfe_per_inference": float(out.nfe_per_inference),
        "vjp_per_inference": float(out.vjp_per_inference),
        "nfe_per_env_step": float(out.nfe_per_env_step),
        "inference_ms": _finite_or_none(out.inference_ms),
        "inference_ms_p10": _finite_or_none(out.inference_ms_p10),
        "inference_ms_p90": _finite_or_none(out.inference_ms_p90),
        "env_steps_per_s": float(out.env_steps_per_s),
        "compile_s": float(out.compile_s),
        "run_s": float(out.run_s),
        "wasted_policy_evals": float(out.wasted_policy_evals),
        "engine_stall_steps": int(np.asarray(out.extra["stall_steps_all"]).sum()) if "stall_steps_all" in out.extra else None,
        "cell_config": {
            "level": cell.level, "method": cell.method.model_dump(mode="json"), "setup": cell.setup.model_dump(mode="json"),
            "H": scenario.H, "flow_steps": scenario.flow_steps, "dt_ms": scenario.dt_ms, "max_steps": scenario.max_steps,
            "fallback": scenario.fallback, "seeds": scenario.seeds.model_dump(mode="json"), "rollouts": scenario.rollouts,
            "policy_sha256": prep.policy.sha256,
            "policy": policy_summary(prep.policy),
        },
    }
    rollouts = {
        "solved": solved,
        "episode_return": np.asarray(per["return"], np.float64),
        "episode_length": np.asarray(per["length"], np.int32),
        "jerk_max_d1": np.asarray(per["jerk_max_d1"], np.float64),
        "jerk_mean_d1": np.asarray(per["jerk_mean_d1"], np.float64),
        "jerk_max_d2": np.asarray(per["jerk_max_d2"], np.float64),
        "jerk_mean_d2": np.asarray(per["jerk_mean_d2"], np.float64),
        "stall_steps": np.asarray(per["stall_steps"], np.int32),
        "wall_steps": np.asarray(per["wall_steps"], np.int32),
        "n_inferences": np.asarray(per["n_inferences"], np.int32),
        "nfe": np.asarray(per["nfe"], np.int64),
        "vjp": np.asarray(per["vjp"], np.int64),
    }
    sched = prep.schedule
    valid = sched.valid  # [B, K]
    b_idx, k_idx = np.nonzero(valid)
    inferences = {
        "rollout": b_idx, "k": k_idx, "tau": sched.tau[valid], "d": sched.d_true[valid],
        "d_control": sched.d[valid], "dhat": sched.dhat[valid], "s": sched.s[valid],
    }
    return row, rollouts, inferences


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise _Terminated("terminated by SIGTERM")


def _fmt_ci(row) -> str:
    return f"{row['solve_rate']:.3f} [{row['solve_ci_low']:.2f}, {row['solve_ci_high']:.2f}]"


def recorded_run(db_path: Path, run_id: str, field: str = "--resume") -> dict:
    """What re-running a stored run needs (``--resume``, `rtcbench render`): its scenario path, ``--rollouts``,
    config hash, ``--only`` filter and ``--set`` overrides (a list, or None), read-only. Older files lack the
    later columns: read as NULL. A missing run is a UserError on `field`."""
    from rtcbench.store.db import read_only

    wanted = ("scenario_path", "n_rollouts_override", "config_hash", "cell_filter", "overrides")
    with read_only(db_path) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
        select = ", ".join(c if c in columns else f"NULL AS {c}" for c in wanted)
        row = conn.execute(f"SELECT {select} FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise UserError(f"no run {run_id!r} in this file", path=str(db_path), field=field)
    run = dict(zip(wanted, row, strict=True))
    run["overrides"] = json.loads(run["overrides"]) if run["overrides"] else None
    return run


def _check_resumable(recorded: dict, run_id: str, config_hash: str, scenario_path) -> None:
    """The run was made from this exact configuration (its overrides re-applied)."""
    if recorded["config_hash"] != config_hash:
        raise UserError(
            f"run {run_id} was made from a different scenario configuration (config hash "
            f"{str(recorded['config_hash'])[:12]}..., now {config_hash[:12]}...): the scenario, its traces, its "
            "policies or --rollouts changed; start a new run instead of resuming", path=str(scenario_path),
            field="--resume")


def run_scenario(scenario_path: str | os.PathLike, db_path: Path, *, rollouts: int | None = None, device: str = "auto",
                 resume: str | None = None, compile_cache: Path | None = None, only: str | None = None,
                 devices: int = 1, rollout_shards: int = 1, executor: str = "local", ray_options=None,
                 sets: list[str] | None = None) -> int:
    """Run (or resume) a scenario into `db_path`. Returns the exit code (0 when the run completed).
    compile_cache: folder of JAX's persistent compilation cache, None for none (rtcbench.engine.compile_cache).
    only: ``--only`` cell filter (`parse_only`), recorded in the run and re-applied by ``--resume``.
    sets: ``--set PATH=VALUE`` overrides of the scenario (`rtcbench.scenario.apply_sets`), validated like the
    file; they enter the config hash through the validated scenario, are recorded in ``runs.overrides``
    (a JSON list, as given) and are re-applied by ``--resume``.
    devices: local devices each shard's rollouts are split over; rollout_shards: pieces each cell is split
    into (`rtcbench.executors`); executor: ``local`` or ``ray`` (with `ray_options`, an executors.RayOptions).
    Results do not depend on devices, shards or executor (tested on CPU: bit-identical)."""
    from rich.console import Console

    from rtcbench.executors import EXECUTORS, RayOptions, shard_bounds
    from rtcbench.scenario import Scenario
    from rtcbench.store.db import Store, check_db_path, lock_timeout_from_env

    t_start = time.perf_counter()
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=200)  # logs and captured output: no wrapping at 80 columns
    if device not in DEVICES:
        raise UserError(f"must be one of {', '.join(DEVICES)}, got {device!r}", field="--device")
    if rollouts is not None and rollouts < 1:
        raise UserError(f"must be >= 1, got {rollouts}", field="--rollouts")
    if executor not in EXECUTORS:
        raise UserError(f"must be one of {', '.join(EXECUTORS)}, got {executor!r}", field="--executor")
    if devices < 1:
        raise UserError(f"must be >= 1, got {devices}", field="--devices")
    if executor == "ray":
        from rtcbench.executors import _import_ray

        _import_ray()  # a missing extra is a usage error before anything is loaded or written
    check_db_path(db_path, must_exist=bool(resume))
    lock_timeout_from_env()
    sets = list(sets) if sets else None
    recorded = recorded_run(db_path, resume) if resume else None
    if recorded is not None:
        if sets is not None and sets != recorded["overrides"]:
            shown = " ".join(f"--set {s}" for s in recorded["overrides"] or []) or "no --set"
            raise UserError(f"run {resume} was made with {shown}; resume it with the same overrides (or none, "
                            "which re-applies them)", field="--set")
        sets = recorded["overrides"]
    scenario = Scenario.from_yaml(scenario_path, sets=sets)
    if rollouts is not None:
        scenario = scenario.with_overrides(rollouts=rollouts)
    config_hash = scenario.config_hash
    if recorded is not None:
        _check_resumable(recorded, resume, config_hash, scenario_path)
        if only is not None and only != recorded["cell_filter"]:
            raise UserError(f"run {resume} was made with --only {recorded['cell_filter']!r}; resume it with the same "
                            "filter (or none, which re-applies it)", field="--only")
        only = recorded["cell_filter"]
    select = parse_only(only, scenario) if only else None
    shard_bounds(scenario.rollouts, rollout_shards, devices)  # refuse an uneven split before any work
    # Under Ray the driver only plans (loads files, builds schedules) and its host need not have the workers'
    # GPU: the workers select `device` themselves (and refuse a missing GPU there).
    select_device("cpu" if executor == "ray" else device)
    if executor == "local":
        import jax

        if devices > len(jax.devices()):
            raise UserError(f"asks for {devices} devices but JAX sees {len(jax.devices())}", field="--devices")
    from rtcbench.engine import compile_cache as cc

    cache_dir = cc.enable(compile_cache)
    hits0, misses0 = cc.COUNTS.hits, cc.COUNTS.misses
    prepared = prepare(scenario, select)

    from rtcbench import provenance

    store = Store.open(db_path)
    previous_wall = previous_compile = 0.0
    if resume:
        run = store.get_run(resume)
        if run is None or run["config_hash"] != config_hash:  # changed since the check above
            _check_resumable(recorded_run(db_path, resume), resume, config_hash, scenario_path)
        done = store.cells_done(resume)
        run_id = resume
        if run["status"] == "complete" and all(p.key in done for p in prepared):
            console.print(f"run {resume} is already complete; nothing to add")
            _print_summary(store, run_id, db_path)
            return 0
        previous_wall, previous_compile = float(run["wall_s"] or 0.0), float(run["compile_s"] or 0.0)
        store.restart_run(run_id)
    else:
        done = set()
        info = provenance.collect()
        if executor == "ray":  # the driver's own JAX device says nothing about the workers'
            info.update(jax_backend=f"ray/{device}", device_kind=None)
        run_id = store.create_run({
            **info,
            "scenario": scenario.name,
            "scenario_version": str(scenario.version),
            "scenario_path": str(scenario_path),
            "config_hash": config_hash,
            "comparability_key": scenario.comparability_key,
            "n_rollouts_override": rollouts,
            "n_cells_planned": len(prepared),
            "device_request": device,
            "device_count": devices,
            "executor": executor,
            "rollout_shards": rollout_shards,
            "cell_filter": only,
            "overrides": json.dumps(sets) if sets else None,
        })
    todo = [p for p in prepared if p.key not in done]
    console.print(f"run [bold]{run_id}[/] of scenario {scenario.name} v{scenario.version}: {len(todo)} of "
                  f"{len(prepared)} cells to run, {scenario.rollouts} rollouts each, into {db_path}")

    compile_total = 0.0
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from rtcbench.executors import assemble, execute_local, execute_ray, plan_shards

        shards = plan_shards(todo, rollout_shards, devices)
        if executor == "local":
            def announce(shard) -> None:  # logs and pipes get no live bar: say what the silent minutes are
                if not console.is_terminal:
                    console.print("  start {} | {} | {}".format(*shard.key)
                                  + (f" rollouts [{shard.lo}, {shard.hi})" if rollout_shards > 1 else "")
                                  + " (the first cell of a level and method compiles its episode)")

            results = execute_local(scenario, todo, shards, devices, on_start=announce)
        else:
            results = execute_ray(scenario, todo, shards, devices, device=device, scenario_path=str(scenario_path),
                                  rollouts=rollouts, compile_cache=cache_dir, options=ray_options or RayOptions(),
                                  log=console.print, sets=sets)
        pending: dict[int, dict[int, object]] = {}  # cell index -> {lo: shard output}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False) as progress:
            task = progress.add_task("cells", total=len(prepared), completed=len(prepared) - len(todo))
            if todo:
                progress.update(task, description="{} | {} | {}".format(*todo[0].key))
            for shard, shard_out in results:
                parts = pending.setdefault(shard.cell_index, {})
                parts[shard.lo] = shard_out  # each shard reports once: Ray retries inside the task
                if len(parts) < rollout_shards:
                    continue
                prep = todo[shard.cell_index]
                out = assemble([parts[lo] for lo in sorted(parts)])
                del pending[shard.cell_index]
                level, method, setup = prep.key
                row, per_rollout, inferences = cell_rows(scenario, prep, out, run_id)
                t_write = time.perf_counter()
                store.write_cell(row, per_rollout, inferences)
                write_s = time.perf_counter() - t_write
                compile_total += out.compile_s
                progress.console.print(
                    f"  {level} | {method} | {setup}: solve {_fmt_ci(row)}, jerk d2 "
                    f"{row['jerk_max_d2'] if row['jerk_max_d2'] is not None else float('nan'):.3g}, "
                    f"compile {out.compile_s:.1f} s, run {out.run_s:.1f} s, write {write_s * 1000:.0f} ms"
                    + (f" (of which {store.last_connect_s:.2f} s opening the file / waiting for its lock)"
                       if store.last_connect_s > 0.1 else ""))
                progress.advance(task)
                nxt = next((p for i, p in enumerate(todo) if i > shard.cell_index and i not in pending), None)
                if nxt is not None and executor == "local":
                    progress.update(task, description="{} | {} | {}".format(*nxt.key))
    except BaseException as exc:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip() or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted (KeyboardInterrupt)"
        elif isinstance(exc, _Terminated):
            message = str(exc)
        try:
            Store(db_path, lock_timeout_s=min(30.0, store.lock_timeout_s)).finish_run(
                run_id, status="failed", error=message, wall_s=previous_wall + time.perf_counter() - t_start,
                compile_s=previous_compile + compile_total)
        except Exception as inner:  # the original error matters more; say why the status could not be set
            console.print(f"could not mark run {run_id} failed: {inner}")
        console.print(f"run {run_id} failed: {message.splitlines()[-1]}; resume it with --resume {run_id}")
        if isinstance(exc, _Terminated):
            return 143
        raise
    finally:
        signal.signal(signal.SIGTERM, old_handler)

    store.finish_run(run_id, status="complete", wall_s=previous_wall + time.perf_counter() - t_start,
                     compile_s=previous_compile + compile_total)
    _print_summary(store, run_id, db_path)
    if cache_dir is None:
        console.print("compile cache: off (--no-compile-cache)")
    elif executor == "ray":
        console.print(f"compile cache: {cache_dir}, used by the Ray workers (their hits are counted in their own "
                      f"processes; {compile_total:.1f} s compiling or loading, summed over workers)")
    else:
        console.print(f"compile cache: {cc.COUNTS.hits - hits0} hits, {cc.COUNTS.misses - misses0} misses "
                      f"(JAX's persistent cache in {cache_dir}; {compile_total:.1f} s compiling or loading)")
    return 0


def _print_summary(store, run_id: str, db_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rtcbench.store.db import read_only

    with read_only(db_path, lock_timeout_s=store.lock_timeout_s) as conn:
        frame = conn.execute(
            "SELECT level, setup, method, n_rollouts, solve_rate, solve_ci_low, solve_ci_high, jerk_max_d2, d_p95, "
            "d_p99, violation_rate, stall_frac, inference_ms FROM cells WHERE run_id = ? ORDER BY level, setup, method",
            [run_id]).df()
        run = conn.execute("SELECT status, wall_s, compile_s FROM runs WHERE run_id = ?", [run_id]).fetchone()
    table = Table(title=f"run {run_id}: {run[0]}, {run[1]:.0f} s wall ({run[2]:.0f} s compiling)")
    for col in ("level", "setup", "method", "n", "solve rate [95% CI]", "jerk max d2", "d p95/p99", "violation",
                "stall", "inference ms"):
        table.add_column(col)

    def num(value, spec: str) -> str:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)

    for _, r in frame.iterrows():
        table.add_row(*(Text(x) for x in (
            r["level"], r["setup"], r["method"], str(int(r["n_rollouts"])), _fmt_ci(r), num(r["jerk_max_d2"], ".3g"),
            f"{num(r['d_p95'], '.3g')}/{num(r['d_p99'], '.3g')}", num(r["violation_rate"], ".3f"),
            num(r["stall_frac"], ".3f"), num(r["inference_ms"], ".3g"))))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)
    print(f"run_id: {run_id}")
