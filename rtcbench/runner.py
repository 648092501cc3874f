"""`rtcbench run`: every cell of a scenario through the engine, each finished cell into the store.

    check arguments -> plan (rtcbench.plan) -> open the run row -> execute (rtcbench.executors)
      -> rows (rtcbench.rows) -> store, one cell per transaction -> finish the run row

Order of work, so that bad input never leaves a row behind:
1. check the arguments and the database path; choose the JAX device (``--device gpu`` without a GPU is an
   error, never a silent CPU run);
2. resolve the plan: load and validate the scenario, load every level and policy (dims are checked) and
   build every schedule;
3. only then open the store, create the run row (status ``running``) or, with ``--resume``, check that
   the run exists and that its config hash is the scenario's;
4. for each missing cell: run its shards and write the cell, its rollouts and its per-inference delays in
   one short transaction;
5. mark the run ``complete`` (or ``failed`` with the error text on any exception or interrupt).

A process killed with SIGKILL leaves its run ``running`` with only whole cells; ``--resume RUN_ID``
adds the missing ones.
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rtcbench.device import DEVICES, select_device
from rtcbench.errors import UserError, output_error

if TYPE_CHECKING:
    from rtcbench.executors import RayOptions
    from rtcbench.plan import PreparedCell, RunPlan
    from rtcbench.run_ui import RunUI
    from rtcbench.store.db import Store, StoreWriteError


@dataclass
class RunRequest:
    """The arguments of `rtcbench run`, as given (None: not given)."""

    scenario_path: Path
    db_path: Path
    rollouts: int | None = None
    device: str = "auto"
    resume: str | None = None
    compile_cache: Path | None = None
    only: str | None = None
    devices: int = 1
    rollout_shards: int = 1
    executor: str = "local"
    ray_options: RayOptions | None = None
    sets: list[str] | None = None
    compile_cache_dir: Path | None = None  # the cache folder in use, once `resolve_plan` switched it on


@dataclass
class OpenRun:
    """The run row being filled: its id, the cells still to run and the time a resumed run already spent."""

    run_id: str
    todo: list[PreparedCell]
    previous_wall_s: float = 0.0
    previous_compile_s: float = 0.0
    compile_s: float = 0.0  # compile seconds of this invocation
    already_complete: bool = False


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise _Terminated("terminated by SIGTERM")


def _check_arguments(req: RunRequest) -> None:
    from rtcbench.executors import EXECUTORS, import_ray
    from rtcbench.store.db import check_db_path, lock_timeout_from_env

    if req.device not in DEVICES:
        raise UserError(f"must be one of {', '.join(DEVICES)}, got {req.device!r}", field="--device")
    if req.rollouts is not None and req.rollouts < 1:
        raise UserError(f"must be >= 1, got {req.rollouts}", field="--rollouts")
    if req.executor not in EXECUTORS:
        raise UserError(f"must be one of {', '.join(EXECUTORS)}, got {req.executor!r}", field="--executor")
    if req.devices < 1:
        raise UserError(f"must be >= 1, got {req.devices}", field="--devices")
    if req.executor == "ray":
        import_ray()  # a missing extra is a usage error before anything is loaded or written
    check_db_path(req.db_path, must_exist=bool(req.resume))
    lock_timeout_from_env()
    if req.compile_cache is not None:
        _check_compile_cache(Path(req.compile_cache).expanduser())


def _check_compile_cache(folder: Path) -> None:
    """``--compile-cache`` must be a folder this process can create or write into, checked before any work:
    JAX would otherwise fail deep in a run, or silently compile every episode again."""
    existing = folder
    while not existing.exists() and existing != existing.parent:  # the nearest part of the path that exists
        existing = existing.parent
    where = "" if existing == folder else f"it cannot be created inside {existing}: "
    if not existing.is_dir():
        raise UserError(f"{where}{existing} is a file, not a folder; give a folder for JAX's compilation cache",
                        path=str(folder), field="--compile-cache")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{where}{existing} is not writable (read-only or no permission); give a writable folder, "
                        "or --no-compile-cache", path=str(folder), field="--compile-cache")


def _check_resumable(recorded: dict, run_id: str, config_hash: str, scenario_path) -> None:
    """The run was made from this exact configuration (its overrides re-applied)."""
    if recorded["config_hash"] != config_hash:
        raise UserError(
            f"run {run_id} was made from a different scenario configuration (config hash "
            f"{str(recorded['config_hash'])[:12]}..., now {config_hash[:12]}...): the scenario, its traces, its "
            "policies or --rollouts changed; start a new run instead of resuming", path=str(scenario_path),
            field="--resume")


def _apply_recorded_rollouts(req: RunRequest, recorded: dict) -> None:
    """``--resume`` re-applies the run's ``--rollouts``; a different one given now is refused."""
    stored = recorded["n_rollouts_override"]
    stored = int(stored) if stored is not None else None
    if req.rollouts is not None and req.rollouts != stored:
        raise UserError(f"run {req.resume} was made with " + (f"--rollouts {stored}" if stored else "the scenario's "
                        "rollouts") + "; resume it with the same (or none, which re-applies it)", field="--rollouts")
    req.rollouts = stored


def _apply_recorded_sets(req: RunRequest, recorded: dict) -> None:
    """``--resume`` re-applies the run's ``--set`` overrides; different ones given now are refused."""
    from rtcbench.scenario.bounds import shown_sets

    if req.sets is not None and req.sets != recorded["overrides"]:
        made = shown_sets(recorded["overrides"]) if recorded["overrides"] else "no --set"
        raise UserError(f"run {req.resume} was made with {made}, but {shown_sets(req.sets)} was given; resume "
                        "it with the same overrides (or none, which re-applies them)", field="--set")
    req.sets = recorded["overrides"]


def _apply_recorded_only(req: RunRequest, recorded: dict) -> None:
    """``--resume`` re-applies the run's ``--only`` filter; a different one given now is refused."""
    from rtcbench.scenario.bounds import short_repr

    recorded_only = recorded["cell_filter"]
    if req.only is not None and req.only != recorded_only:
        made = f"with --only {short_repr(recorded_only)}" if recorded_only else "without --only (on every cell)"
        raise UserError(f"run {req.resume} was made {made}, but --only {short_repr(req.only)} was given; resume it "
                        "with the same filter (or none, which re-applies it)", field="--only")
    req.only = recorded["cell_filter"]


def resolve_plan(req: RunRequest) -> RunPlan:
    """Arguments (and the resumed run's record) -> the plan, with every check that needs no store write.
    JAX's persistent compile cache is switched on between the checks and the plan (loading levels and
    checkpoints compiles small programs, and JAX reads the cache setting at its first compilation)."""
    from rtcbench.engine import compile_cache as cc
    from rtcbench.executors import shard_bounds
    from rtcbench.plan import build_plan, load_scenario, parse_only
    from rtcbench.store.runs import recorded_run, resolve_run_id

    if req.resume:
        req.resume = resolve_run_id(req.db_path, req.resume, "--resume")  # an id, a unique prefix or `latest`
    recorded = recorded_run(req.db_path, req.resume) if req.resume else None
    if recorded is not None:
        _apply_recorded_rollouts(req, recorded)
        _apply_recorded_sets(req, recorded)
    scenario = load_scenario(req.scenario_path, sets=req.sets, rollouts=req.rollouts)
    if recorded is not None:
        _check_resumable(recorded, req.resume, scenario.config_hash, req.scenario_path)
        _apply_recorded_only(req, recorded)
    select = parse_only(req.only, scenario) if req.only else None
    shard_bounds(scenario.rollouts, req.rollout_shards, req.devices)  # refuse an uneven split before any work
    # Under Ray the driver only plans (loads files, builds schedules) and its host need not have the workers'
    # GPU: the workers select the device themselves (and refuse a missing GPU there).
    select_device("cpu" if req.executor == "ray" else req.device)
    if req.executor == "local":
        import jax

        if req.devices > len(jax.devices()):
            raise UserError(f"asks for {req.devices} devices but JAX sees {len(jax.devices())}", field="--devices")
    try:
        req.compile_cache_dir = cc.enable(req.compile_cache)
    except OSError as exc:  # e.g. a folder under /proc, which no permission check foresees
        raise output_error(exc, req.compile_cache, "--compile-cache", what="create the compile cache folder") from None
    return build_plan(scenario, select)


def _open_run(req: RunRequest, plan: RunPlan, store: Store) -> OpenRun:
    """Create the run row, or restart the resumed one; the cells it still lacks."""
    from rtcbench import provenance
    from rtcbench.store.runs import recorded_run

    if req.resume:
        run = store.get_run(req.resume)
        if run is None or run["config_hash"] != plan.config_hash:  # changed since the check before planning
            _check_resumable(recorded_run(req.db_path, req.resume), req.resume, plan.config_hash, req.scenario_path)
        done = store.cells_done(req.resume)
        todo = plan.todo(done)
        if run["status"] == "complete" and not todo:
            return OpenRun(req.resume, [], already_complete=True)
        store.restart_run(req.resume)
        return OpenRun(req.resume, todo, float(run["wall_s"] or 0.0), float(run["compile_s"] or 0.0))
    info = provenance.collect()
    if req.executor == "ray":  # the driver's own JAX device says nothing about the workers'
        info.update(jax_backend=f"ray/{req.device}", device_kind=None)
    run_id = store.create_run({
        **info, "scenario": plan.scenario_name, "scenario_version": plan.scenario_version,
        "scenario_path": str(req.scenario_path), "config_hash": plan.config_hash,
        "comparability_key": plan.comparability_key, "n_rollouts_override": req.rollouts,
        "n_cells_planned": len(plan.cells), "device_request": req.device, "device_count": req.devices,
        "executor": req.executor, "rollout_shards": req.rollout_shards, "cell_filter": req.only,
        "overrides": json.dumps(req.sets) if req.sets else None,
    })
    return OpenRun(run_id, plan.todo(set()))


def _shard_outputs(req: RunRequest, plan: RunPlan, todo: list[PreparedCell], ui: RunUI, cache_dir) -> Iterator:
    from rtcbench.executors import RayOptions, execute_local, execute_ray, plan_shards

    shards = plan_shards(todo, req.rollout_shards, req.devices)
    if req.executor == "local":
        return execute_local(plan.engine, todo, shards, req.devices, on_start=ui.announce)
    return execute_ray(todo, shards, req.devices, device=req.device, scenario_path=str(req.scenario_path),
                       rollouts=req.rollouts, compile_cache=cache_dir, options=req.ray_options or RayOptions(),
                       log=ui.print, sets=req.sets)


def _execute_and_write(req: RunRequest, plan: RunPlan, opened: OpenRun, store: Store, ui: RunUI, cache_dir) -> None:
    """Run every shard of the cells to do; write each cell when its last shard is back."""
    from rtcbench.executors import assemble
    from rtcbench.rows import cell_rows

    todo = opened.todo
    pending: dict[int, dict[int, object]] = {}  # cell index -> {lo: shard output}
    with ui.progress(len(plan.cells), len(plan.cells) - len(todo), todo[0] if todo else None):
        for shard, shard_out in _shard_outputs(req, plan, todo, ui, cache_dir):
            parts = pending.setdefault(shard.cell_index, {})
            parts[shard.lo] = shard_out  # each shard reports once: Ray retries inside the task
            if len(parts) < req.rollout_shards:
                continue
            prep = todo[shard.cell_index]
            out = assemble([parts[lo] for lo in sorted(parts)])
            del pending[shard.cell_index]
            row, per_rollout, inferences = cell_rows(plan.scenario_name, plan.engine, prep, out, opened.run_id)
            t_write = time.perf_counter()
            store.write_cell(row, per_rollout, inferences)
            opened.compile_s += out.compile_s
            ui.cell_done(row, out.compile_s, out.run_s, time.perf_counter() - t_write, store.last_connect_s)
            nxt = next((p for i, p in enumerate(todo) if i > shard.cell_index and i not in pending), None)
            if nxt is not None and req.executor == "local":
                ui.next_cell(nxt)


def _mark_failed(exc: BaseException, req: RunRequest, opened: OpenRun, store: Store, ui: RunUI,
                 t_start: float) -> bool:
    """Set the run's status to failed with the error's text -> whether that write succeeded."""
    from rtcbench.store.db import Store as StoreCls

    message = "".join(traceback.format_exception_only(type(exc), exc)).strip() or type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted (KeyboardInterrupt)"
    elif isinstance(exc, _Terminated):
        message = str(exc)
    try:
        StoreCls(req.db_path, lock_timeout_s=min(30.0, store.lock_timeout_s)).finish_run(
            opened.run_id, status="failed", error=message,
            wall_s=opened.previous_wall_s + time.perf_counter() - t_start,
            compile_s=opened.previous_compile_s + opened.compile_s)
    except Exception as inner:  # the original error matters more; say why the status could not be set
        ui.print(f"could not mark run {opened.run_id} failed: {inner}")
        return False
    ui.print(f"run {opened.run_id} failed: {message.splitlines()[-1]}; resume it with --resume {opened.run_id}")
    return True


def _store_write_failed(exc: StoreWriteError, run_id: str, marked: bool) -> UserError:
    """The one-paragraph error of a run whose database write failed (disk full, ``ulimit -f``): what failed,
    that the cells stored before are kept, and how to go on."""
    status = "is marked failed" if marked else "could not be marked failed either (it shows as running)"
    return UserError(f"{exc.message}. Run {run_id} {status}; the cells stored before are kept: free space and add "
                     f"the rest with --resume {run_id}", path=exc.path, field=exc.field)


def _cache_line(req: RunRequest, cache_dir, counts: tuple[int, int], compile_s: float) -> str:
    from rtcbench.engine import compile_cache as cc

    if cache_dir is None:
        return "compile cache: off (--no-compile-cache)"
    if req.executor == "ray":
        return (f"compile cache: {cache_dir}, used by the Ray workers (their hits are counted in their own "
                f"processes; {compile_s:.1f} s compiling or loading, summed over workers)")
    return (f"compile cache: {cc.COUNTS.hits - counts[0]} hits, {cc.COUNTS.misses - counts[1]} misses "
            f"(JAX's persistent cache in {cache_dir}; {compile_s:.1f} s compiling or loading)")


def execute_request(req: RunRequest, ui: RunUI | None = None) -> int:
    """Run (or resume) a scenario into ``req.db_path``; see the module docstring. Returns the exit code
    (0 when the run completed; 143 on SIGTERM). Results do not depend on devices, shards or executor
    (tested on CPU: bit-identical)."""
    from rtcbench.engine import compile_cache as cc
    from rtcbench.run_ui import RunUI, print_summary
    from rtcbench.store.db import Store, StoreWriteError

    t_start = time.perf_counter()
    ui = ui or RunUI(req.rollout_shards)
    _check_arguments(req)
    counts = (cc.COUNTS.hits, cc.COUNTS.misses)
    plan = resolve_plan(req)
    cache_dir = req.compile_cache_dir
    store = Store.open(req.db_path)
    opened = _open_run(req, plan, store)
    if opened.already_complete:
        ui.print(f"run {opened.run_id} is already complete; nothing to add")
        print_summary(req.db_path, opened.run_id, store.lock_timeout_s)
        return 0
    ui.print(f"run [bold]{opened.run_id}[/] of scenario {plan.scenario_name} v{plan.scenario_version}: "
             f"{len(opened.todo)} of {len(plan.cells)} cells to run, {plan.engine.rollouts} rollouts each, "
             f"into {req.db_path}")
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _execute_and_write(req, plan, opened, store, ui, cache_dir)
    except BaseException as exc:
        marked = _mark_failed(exc, req, opened, store, ui, t_start)
        if isinstance(exc, _Terminated):
            return 143
        if isinstance(exc, StoreWriteError):
            raise _store_write_failed(exc, opened.run_id, marked) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    try:
        store.finish_run(opened.run_id, status="complete",
                         wall_s=opened.previous_wall_s + time.perf_counter() - t_start,
                         compile_s=opened.previous_compile_s + opened.compile_s)
    except StoreWriteError as exc:
        raise UserError(f"{exc.message}. Every cell of run {opened.run_id} is stored, but the run could not be marked "
                        f"complete: free space and mark it with --resume {opened.run_id}", path=exc.path,
                        field=exc.field) from None
    print_summary(req.db_path, opened.run_id, store.lock_timeout_s)
    ui.print(_cache_line(req, cache_dir, counts, opened.compile_s))
    return 0


def run_scenario(scenario_path: str | os.PathLike, db_path: Path, *, rollouts: int | None = None, device: str = "auto",
                 resume: str | None = None, compile_cache: Path | None = None, only: str | None = None,
                 devices: int = 1, rollout_shards: int = 1, executor: str = "local", ray_options=None,
                 sets: list[str] | None = None) -> int:
    """Run (or resume) a scenario into `db_path`. Returns the exit code (0 when the run completed).
    compile_cache: folder of JAX's persistent compilation cache, None for none (rtcbench.engine.compile_cache).
    only: ``--only`` cell filter (`rtcbench.plan.parse_only`), recorded in the run and re-applied by ``--resume``.
    sets: ``--set PATH=VALUE`` overrides of the scenario (`rtcbench.scenario`'s overrides), validated like the
    file; they enter the config hash through the validated scenario, are recorded in ``runs.overrides``
    (a JSON list, as given) and are re-applied by ``--resume``.
    devices: local devices each shard's rollouts are split over; rollout_shards: pieces each cell is split
    into (`rtcbench.executors`); executor: ``local`` or ``ray`` (with `ray_options`, an executors.RayOptions)."""
    req = RunRequest(Path(scenario_path), Path(db_path), rollouts=rollouts, device=device, resume=resume,
                     compile_cache=compile_cache, only=only, devices=devices, rollout_shards=rollout_shards,
                     executor=executor, ray_options=ray_options, sets=list(sets) if sets else None)
    return execute_request(req)
