"""Where the cells of a run are computed: in this process (``local``) or on a Ray cluster (``ray``).

The driver (`rtcbench.runner.run_scenario`) resolves the plan once (`rtcbench.plan.build_plan`: it validates
the scenario, loads every level and checkpoint and builds every schedule). It then hands *shards* to an executor and writes each cell
itself when all of the cell's shards are back, in one transaction; workers never touch the DuckDB file,
so the store keeps a single writer and ``--resume`` works unchanged::

    scenario -> plan (driver) -> shards -> executor (local | ray workers) -> shard outputs
             -> driver: reassemble a cell's shards in rollout order -> rows -> store (one cell per transaction)

A shard is rollouts [lo, hi) of one cell. It runs the cell's schedule rows [lo, hi) with
``first_rollout = lo``, so each rollout keeps the env, policy and delay streams it has in the whole cell
(delay streams are keyed by rollout, `rtcbench.replay.tail`; engine keys by ``first_rollout + b``,
`rtcbench.engine.rollout`). Splitting a cell into shards, or its rollouts over devices, changes the batch
XLA sees. On this machine's CPU that left every per-rollout metric and every action bit-identical
(`tests/engine/test_shards.py`, 2 shards and 2 forced host devices); other backends may pick other kernels
for other batch sizes, so identity is claimed only where it is tested.

Ray (optional extra ``pip install -e ".[ray]"``). ``--executor ray`` starts one actor per worker slot. An
actor keeps its process's compiled episodes, and the driver gives an idle actor the next shard of the
compile group (level, method, policy) it ran last, so each group compiles once per actor (and is loaded
from JAX's persistent cache when the workers share the driver's cache folder). An actor whose group is done
takes the untouched group with the most estimated work (`ShardQueue`, `shard_work`: longest first, so a BID
group does not start last and leave the other workers idle while it runs), and joins a started group only
when no untouched one is left. A worker that dies is
restarted and its shard retried by Ray (``max_restarts``/``max_task_retries``), inside the one call the driver
made, so each shard's result reaches the driver once; a cell already in the store is never written again
(its key is unique: a second write would fail the run, not duplicate the cell). Worker loss is left to Ray
and is not exercised by the tests here.
Workers load the scenario from the same path as the driver, so every node needs the same files at the
same paths (one checkout on a shared filesystem, or the same checkout on each node). Each worker
recomputes the cell's config hash and refuses to run when it differs from the driver's, so a node with
other policy, level or trace files fails loudly instead of mixing results.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from rtcbench.errors import UserError

if TYPE_CHECKING:
    from rtcbench.engine.cell import CellOutput
    from rtcbench.methods.config import MethodConfig
    from rtcbench.plan import EngineParams, PreparedCell

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Shard:
    """Rollouts [lo, hi) of the cell at ``cell_index`` of the driver's to-do list."""

    cell_index: int
    key: tuple[str, str, str]  # (level, method label, setup)
    group: tuple  # compile group: (level, method compute key, policy path)
    lo: int
    hi: int
    time_inference: bool  # shard 0 of a cell measures the bare batched policy call
    work: float = 0.0  # estimated cost, for ordering only (`shard_work`); never changes a result


def shard_bounds(n_rollouts: int, n_shards: int, devices: int = 1) -> list[tuple[int, int]]:
    """Split [0, n_rollouts) into n_shards contiguous pieces of nearly equal size, each a multiple of
    `devices` (the rollouts of a shard are split over that many devices). Refuses what cannot split."""
    if n_shards < 1:
        raise UserError(f"must be >= 1, got {n_shards}", field="--rollout-shards")
    if n_rollouts % (n_shards * devices):
        raise UserError(f"{n_rollouts} rollouts do not split into {n_shards} shard(s) of a multiple of {devices} "
                        f"device(s); choose rollouts divisible by {n_shards * devices}", field="--rollout-shards")
    size = n_rollouts // n_shards
    return [(i * size, (i + 1) * size) for i in range(n_shards)]


# Physics per env step, in units of one network evaluation of the policy per inference, for `shard_work`.
# From one run of the default scenario on 2 CPU cores (l/h17_unicycle:packed, 256 rollouts x 256 steps per
# cell): naive 13 s, RTC 16 s, BID-16 60 s per cell.
PHYSICS_WORK = 3.0


def shard_work(method: MethodConfig, rollouts: int, has_weak: bool = False) -> float:
    """Estimated cost of a shard: rollouts x (PHYSICS_WORK + network evaluations per Euler step, a VJP
    counted as two). Used only to order work (the Ray driver hands out the costliest compile group first,
    so that the longest group does not start last); it never changes what a shard computes."""
    from rtcbench.methods.dispatch import make_method

    cost = make_method(method, n=1, has_weak=has_weak).cost
    return float(rollouts) * (PHYSICS_WORK + cost.nfe + 2 * cost.vjp)


def plan_shards(prepared: list[PreparedCell], n_shards: int, devices: int) -> list[Shard]:
    """Every shard of every prepared cell, in the order the cells were given."""
    shards = []
    for index, prep in enumerate(prepared):
        group = (prep.cell.level, prep.cell.method.compute_key(), str(getattr(prep.policy, "path", "")))
        for i, (lo, hi) in enumerate(shard_bounds(prep.schedule.n_rollouts, n_shards, devices)):
            work = shard_work(prep.cell.method, hi - lo, has_weak=prep.weak_policy is not None)
            shards.append(Shard(index, prep.key, group, lo, hi, time_inference=(i == 0), work=work))
    return shards


def run_shard(engine: EngineParams, prep: PreparedCell, shard: Shard, devices: int) -> CellOutput:
    """One shard through the engine: the cell's schedule rows [lo, hi) with the cell-wide rollout offset."""
    from rtcbench.engine import run_cell

    whole = shard.lo == 0 and shard.hi == prep.schedule.n_rollouts
    schedule = prep.schedule if whole else prep.schedule.rollouts(shard.lo, shard.hi)
    return run_cell(prep.level, prep.policy, prep.cell.method, schedule, H=engine.H, n=engine.flow_steps,
                    env_seed=engine.env_seed, policy_seed=engine.policy_seed, max_steps=engine.max_steps,
                    fallback=engine.fallback, weak_policy=prep.weak_policy, first_rollout=shard.lo,
                    devices=devices, time_inference=shard.time_inference)


def assemble(outputs: list[CellOutput]) -> CellOutput:
    """A cell's shard outputs (rollout order) -> one CellOutput: per-rollout arrays concatenated, times and
    counts summed; ``inference_ms`` is shard 0's (a batch of that shard's size); the rate is B*T over the
    summed run time."""
    if len(outputs) == 1:
        return outputs[0]
    first = outputs[0]
    per = {k: np.concatenate([o.per_rollout[k] for o in outputs]) for k in first.per_rollout}
    extra = {k: np.concatenate([o.extra[k] for o in outputs]) for k in first.extra}
    run_s = sum(o.run_s for o in outputs)
    steps = sum(o.env_steps_per_s * o.run_s for o in outputs)  # B_i * T summed
    first_steps = float(per["length"].sum())
    return replace(
        first, per_rollout=per, extra=extra, compile_s=sum(o.compile_s for o in outputs), run_s=run_s,
        env_steps_per_s=steps / run_s if run_s > 0 else float("nan"),
        wasted_policy_evals=sum(o.wasted_policy_evals for o in outputs),
        policy_calls=sum(o.policy_calls for o in outputs),
        nfe_per_env_step=float(per["nfe"].sum()) / max(first_steps, 1.0),
        cache_hit=all(o.cache_hit for o in outputs))


def execute_local(engine: EngineParams, prepared: list[PreparedCell], shards: list[Shard], devices: int,
                  on_start: Callable[[Shard], None] | None = None) -> Iterator[tuple[Shard, CellOutput]]:
    """Run the shards in this process, in order (cells of one compile group share one compiled episode).
    on_start(shard) is called before each shard (the driver logs it where no live progress bar is shown)."""
    for shard in shards:
        if on_start is not None:
            on_start(shard)
        yield shard, run_shard(engine, prepared[shard.cell_index], shard, devices)


# --------------------------------------------------------------------------------------------------- ray


class ShardQueue:
    """The Ray driver's to-do list: shards by compile group. A worker gets, in this order of preference:

    1. the next shard of the group it ran last (no new compile);
    2. the first shard of the untouched group with the most estimated work (`Shard.work`), so the longest
       groups start first and no group starts last behind a long one;
    3. only when every group has been started: the next shard of the group with the most work left, which
       another worker is running (the joining worker compiles it once more; with one shard per cell this
       only helps a group of several cells).
    A worker compiles each group it takes once; a group is compiled on a second worker only in case 3,
    because a compile costs as much as tens of seconds of rollouts on a CPU."""

    def __init__(self, shards: list[Shard], workers: int):
        self._groups: dict[tuple, deque] = {}
        for shard in shards:
            self._groups.setdefault(shard.group, deque()).append(shard)
        self._started: set = set()
        self._last: dict[int, tuple | None] = dict.fromkeys(range(workers))

    def __bool__(self) -> bool:
        return bool(self._groups)

    def _work_left(self, group) -> float:
        return sum(sh.work for sh in self._groups[group])

    def next_for(self, worker: int) -> Shard | None:
        group = self._last[worker]
        if group not in self._groups:
            if not self._groups:
                return None
            untouched = [g for g in self._groups if g not in self._started]
            group = max(untouched or self._groups, key=self._work_left)
        shard = self._groups[group].popleft()
        if not self._groups[group]:
            del self._groups[group]
        self._started.add(group)
        self._last[worker] = group
        return shard


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance for this run
    workers: int | None = None  # None: the cluster's GPUs (device gpu), else its CPUs // cpus_per_worker
    cpus_per_worker: int = 2
    max_restarts: int = 2  # per actor; its in-flight shard is retried on the restarted actor


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("needs Ray: pip install -e \".[ray]\" (pinned in constraints.txt)", field="--executor") from None
    return ray


class _Worker:
    """A Ray actor: rebuilds the driver's plan once from the same files and arguments (`plan_from_file`),
    keeps its compiled episodes, runs shards of any cell."""

    def __init__(self, scenario_path: str, rollouts: int | None, device: str, compile_cache: str | None,
                 sets: list[str] | None = None):
        from pathlib import Path

        from rtcbench.device import select_device
        from rtcbench.engine import compile_cache as cc

        select_device(device)
        cc.enable(None if compile_cache is None else Path(compile_cache))
        self._args = (scenario_path, sets, rollouts)  # the driver's --set overrides and --rollouts, as given
        self._plan = None
        self._prepared: dict | None = None
        self._groups: set = set()  # compile groups this actor ran shards of

    def run(self, shard: Shard, config_hash: str, devices: int):
        from rtcbench.plan import plan_from_file

        if self._prepared is None:
            path, sets, rollouts = self._args
            self._plan = plan_from_file(path, sets=sets, rollouts=rollouts)
            self._prepared = {p.key: p for p in self._plan.cells}
        prep = self._prepared.get(shard.key)
        if prep is None or prep.config_hash != config_hash:
            import socket

            raise RuntimeError(
                f"worker on {socket.gethostname()} sees cell {'/'.join(shard.key)} with config hash "
                f"{prep.config_hash[:12] if prep else 'none'}..., the driver {config_hash[:12]}...: this node's "
                "scenario, trace, level or policy files differ from the driver's")
        self._groups.add(shard.group)
        return run_shard(self._plan.engine, prep, shard, devices)

    def compile_stats(self) -> dict:
        """What this actor compiled: episode compilations in its process (rtcbench.engine.cell.COMPILE_COUNT)
        against the compile groups it ran; equal when each group compiled once here."""
        import os
        import socket

        from rtcbench.engine import compile_cache as cc
        from rtcbench.engine.cell import COMPILE_COUNT

        return {"worker": f"{socket.gethostname()}:{os.getpid()}", "groups": len(self._groups),
                "episode_compiles": COMPILE_COUNT["episode"], "cache_hits": cc.COUNTS.hits,
                "cache_misses": cc.COUNTS.misses}

    def device(self) -> str:
        import socket

        import jax

        dev = jax.devices()[0]
        return f"{socket.gethostname()}: {dev.platform} ({dev.device_kind}) x{len(jax.devices())}"


def execute_ray(prepared: list[PreparedCell], shards: list[Shard], devices: int, *, device: str, scenario_path: str,
                rollouts: int | None, compile_cache, options: RayOptions, log: Callable[[str], None] = print,
                sets: list[str] | None = None) -> Iterator[tuple[Shard, CellOutput]]:
    """Run the shards on Ray actors; yields (shard, CellOutput) as shards finish, in any order."""
    ray = import_ray()
    from pathlib import Path

    started_here = not ray.is_initialized()
    if started_here:
        init = {"address": options.address} if options.address else {}
        ray.init(**init, include_dashboard=False, logging_level="ERROR", log_to_driver=True)
    try:
        resources = ray.cluster_resources()
        if device == "gpu":
            n_gpu = int(resources.get("GPU", 0))
            if n_gpu < 1:
                raise UserError("--device gpu with --executor ray needs GPUs in the Ray cluster; it has none",
                                field="--device")
            workers = options.workers or n_gpu
            actor_opts = {"num_gpus": 1, "num_cpus": 1}
        else:
            workers = options.workers or max(1, int(resources.get("CPU", 1)) // options.cpus_per_worker)
            actor_opts = {"num_cpus": min(options.cpus_per_worker, max(1, int(resources.get("CPU", 1))))}
        workers = max(1, min(workers, len(shards)))
        cls = ray.remote(**actor_opts, max_restarts=options.max_restarts,
                         max_task_retries=options.max_restarts)(_Worker)
        cache = None if compile_cache is None else str(Path(compile_cache).resolve())
        actors = [cls.remote(str(Path(scenario_path).resolve()), rollouts, device, cache, sets)
                  for _ in range(workers)]
        where = ray.util.get_node_ip_address() if options.address is None else options.address
        log(f"ray: {workers} worker(s) via {where}, each {actor_opts}; devices: "
            + "; ".join(sorted(set(ray.get([a.device.remote() for a in actors])))))
        hashes = {i: p.config_hash for i, p in enumerate(prepared)}
        queue = ShardQueue(shards, workers)
        in_flight: dict = {}  # ObjectRef -> (actor index, shard)

        idle = deque(range(workers))
        while queue or in_flight:
            while idle and queue:
                worker = idle.popleft()
                shard = queue.next_for(worker)
                ref = actors[worker].run.remote(shard, hashes[shard.cell_index], devices)
                in_flight[ref] = (worker, shard)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                worker, shard = in_flight.pop(ref)
                idle.append(worker)
                yield shard, ray.get(ref)
        for stats in ray.get([a.compile_stats.remote() for a in actors]):
            log(f"ray worker {stats['worker']}: {stats['groups']} compile group(s), {stats['episode_compiles']} "
                f"episode compilation(s); persistent compile cache, all jitted functions: {stats['cache_hits']} "
                f"hit(s), {stats['cache_misses']} miss(es)")
    finally:
        if started_here:
            ray.shutdown()
