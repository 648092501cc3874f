"""`run_cell`: one cell (level x method x delay setup) through the compiled episode, with timing.

Compiled episodes are cached by their static key (EngineStatic plus input shapes), so a sweep of delay
setups, traces and seeds through one method and level compiles once. `compile_s` is the compile time
paid by this call (0.0 when the cache already held the executable; `cache_hit` says which).

Cost of `a2c2`: its NFE and VJP columns are its base method's (flow-policy passes per inference). The
correction head runs once per executed chunk action; `head_evals_per_env_step` counts those per
first-episode env step (``extra["head_evals"]`` per rollout), and `head_flops_per_eval` and
`policy_flops_per_nfe` (XLA's cost analysis of one batch-1 call of each) put a head evaluation in units of
a policy forward pass. They are 0 / None for every other method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.engine.rollout import FALLBACKS, EngineStatic, episode
from rtcbench.engine.timing import inference_times, median_ms
from rtcbench.errors import UserError
from rtcbench.methods.config import NaiveMethod
from rtcbench.methods.dispatch import make_method

PER_ROLLOUT_FIELDS = (
    "solved", "return", "length", "jerk_max_d1", "jerk_mean_d1", "jerk_max_d2", "jerk_mean_d2",
    "jerk_all_max_d1", "jerk_all_mean_d1", "jerk_all_max_d2", "jerk_all_mean_d2",
    "stall_steps", "wall_steps", "n_inferences", "nfe", "vjp",
)
SCHEDULE_FIELDS = ("start", "start_d", "start_dhat", "start_s", "start_shift", "arrive", "stall", "pause")

_COMPILED: dict = {}
COMPILE_COUNT = {"episode": 0}  # number of episode compilations in this process (for tests and logs)


@dataclass
class CellOutput:
    """Metrics of one cell. per_rollout: numpy arrays [B] (first episode only; see rollout.py)."""

    per_rollout: dict[str, np.ndarray]
    compile_s: float
    run_s: float
    env_steps_per_s: float  # B * T simulated env steps / run_s
    wasted_policy_evals: int  # rollout-evaluations on steps where the policy ran but that rollout did not start
    inference_ms: float  # median ms per batched inference call (NaN when time_inference=False)
    nfe_per_inference: int
    vjp_per_inference: int
    nfe_per_env_step: float  # network forward passes per first-episode env step
    policy_calls: int = 0  # steps (of T) where the batched policy ran
    inference_ms_p10: float = float("nan")  # spread of the same timed calls (10th, 90th percentile)
    inference_ms_p90: float = float("nan")
    cache_hit: bool = False
    device: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # stall_steps_all [B]; actions [B, T, A] if recorded;
    # head_evals [B] (a2c2)
    head_evals_per_env_step: float = 0.0  # a2c2: correction-head evaluations per first-episode env step
    head_flops_per_eval: float | None = None  # a2c2: FLOPs of one head evaluation (one rollout)
    policy_flops_per_nfe: float | None = None  # a2c2: FLOPs of one policy forward pass (one rollout), for scale


def policy_parts(policy):
    """LoadedPolicy (graphdef, state) or a FlowPolicy module -> (graphdef, state, kind or None)."""
    if policy is None:
        return None, None, None
    if hasattr(policy, "graphdef") and hasattr(policy, "state"):
        return policy.graphdef, policy.state, getattr(policy, "kind", None)
    graphdef, state = nnx.split(policy)
    return graphdef, state, None


def _compiled_episode(static: EngineStatic, args):
    avals = jax.tree_util.tree_map(lambda x: (jnp.shape(x), jnp.result_type(x)), args)
    key = (static, jax.tree_util.tree_structure(args), tuple(jax.tree_util.tree_leaves(avals)))
    if key in _COMPILED:
        return _COMPILED[key], 0.0, True
    t0 = time.perf_counter()
    compiled = jax.jit(episode, static_argnums=0).lower(static, *args).compile()
    compile_s = time.perf_counter() - t0
    COMPILE_COUNT["episode"] += 1
    _COMPILED[key] = compiled
    return compiled, compile_s, False


def _check_policy(level, policy, kind, method, H: int, weak_graphdef) -> None:
    """The policy fits the level and H, and the method gets the checkpoint kind it needs."""
    cfg = getattr(policy, "config", None) or getattr(policy, "cfg", None)
    if cfg is not None and (cfg.obs_dim, cfg.action_dim, cfg.H) != (level.obs_dim, level.action_dim, H):
        raise UserError(
            f"policy dims (obs {cfg.obs_dim}, action {cfg.action_dim}, H {cfg.H}) do not match level "
            f"{level.name!r} (obs {level.obs_dim}, action {level.action_dim}) with H={H}", field="policy")
    if method.kind == "ttrtc" and kind == "bc":
        raise UserError("method ttrtc needs a policy trained with per-token flow time (checkpoint kind 'ttrtc'), "
                        "got a 'bc' checkpoint", field="method.policy")
    if method.kind == "bid" and method.weak_policy and weak_graphdef is None:
        raise UserError("bid with weak_policy needs the weak policy passed to the engine", field="method.weak_policy")
    meta = getattr(policy, "meta", None) or {}
    if method.kind == "vlash":
        if (kind is not None and kind != "vlash") or (cfg is not None and not getattr(cfg, "cond_dim", 0)):
            raise UserError("method vlash needs a policy fine-tuned with committed-action conditioning (checkpoint "
                            f"kind 'vlash', rtcbench policy train-vlash), got a {kind or 'unconditioned'!r} one",
                            field="method.policy")
    if method.kind == "a2c2":
        if not (kind == "a2c2" if kind is not None else hasattr(policy, "correction")):
            raise UserError("method a2c2 needs an a2c2 checkpoint (a correction head bundled with its base policy, "
                            f"rtcbench policy train-a2c2) as its head, got a {kind!r} checkpoint", field="method.policy")
        need = {"ttrtc": "ttrtc", "vlash": "vlash"}.get(method.base.kind)
        base_kind = meta.get("base_kind")
        if need is not None and kind is not None and base_kind != need:
            raise UserError(f"a2c2 with base {method.base.kind} needs a head trained on a {need} checkpoint, but this "
                            f"one bundles a {base_kind!r} policy", field="method.policy")
        if method.base.kind == "vlash" and cfg is not None and not getattr(cfg, "cond_dim", 0):
            raise UserError("a2c2 with base vlash needs a head trained on a vlash checkpoint", field="method.policy")


def _schedule_arrays(schedule, impl, method, H: int, max_steps: int) -> dict[str, np.ndarray]:
    """The schedule's [B, T] arrays the episode consumes, checked against the engine's settings."""
    sched = {k: np.asarray(getattr(schedule, k)) for k in SCHEDULE_FIELDS}
    T = sched["start"].shape[1]
    if T != max_steps:
        raise ValueError(f"schedule has {T} steps but max_steps={max_steps}")
    if getattr(schedule, "H", H) != H:
        raise ValueError(f"schedule was built for H={schedule.H}, engine H={H}")
    if not sched["start"][:, 0].all():
        raise ValueError("schedule must start the synchronous first inference at step 0 in every rollout")
    if impl.world_pauses != bool(getattr(schedule, "world_pauses", False)):
        raise ValueError(f"method {method.kind!r} needs a schedule built with world_pauses={impl.world_pauses}")
    return sched


def _inference_ms(level, method, graphdef, state, static: EngineStatic, weak_state, repeats: int):
    """Median, 10th and 90th percentile ms of the bare batched policy call, timed after warm-up."""
    obs_row, _ = level.reset(jax.random.PRNGKey(0))
    times = inference_times(method, graphdef, state, obs_row, B=static.B, H=static.H, n=static.n,
                            action_dim=level.action_dim, repeats=repeats, weak_graphdef=static.weak_graphdef,
                            weak_state=weak_state)
    p10, p90 = (float(v) for v in 1000.0 * np.percentile(times, [10, 90]))
    return median_ms(times), p10, p90


def run_cell(level, policy, method, schedule, *, H: int, n: int, env_seed: int, policy_seed: int, max_steps: int,
             fallback: str = "hold", weak_policy=None, time_inference: bool = True, inference_repeats: int = 10,
             record_actions: bool = False, first_rollout: int = 0, devices: int = 1) -> CellOutput:
    """Run one cell. level: a Level (or name); policy: LoadedPolicy or FlowPolicy (for `ttrtc`, the
    per-token-time policy); method: a MethodConfig; schedule: a rtcbench.replay Schedule of [B, max_steps].

    first_rollout: the cell-wide index of the schedule's row 0. A shard of a cell (the schedule's rows
    [lo, hi), `Schedule.rollouts`) passes lo, so its rollouts get the same env and policy keys as in the
    whole cell; it is a traced input (shards of any offset share one compiled episode).
    devices: shard the B rollouts over this many local devices (B must divide; never a silent fallback)."""
    from rtcbench.engine.smoothness import used_mask
    from rtcbench.levels import load_level, used_action_dims

    if isinstance(level, str):
        level = load_level(level)
    if fallback not in FALLBACKS:
        raise UserError(f"fallback must be one of {list(FALLBACKS)}, got {fallback!r}", field="fallback")
    graphdef, state, kind = policy_parts(policy)
    weak_graphdef, weak_state, _ = policy_parts(weak_policy)
    _check_policy(level, policy, kind, method, H, weak_graphdef)
    impl = make_method(method, n=n, has_weak=weak_graphdef is not None)
    sched = _schedule_arrays(schedule, impl, method, H, max_steps)
    B, T = sched["start"].shape

    local = jax.devices()
    n_dev = int(devices)
    if n_dev < 1 or n_dev > len(local):
        raise UserError(f"asks for {n_dev} devices but JAX sees {len(local)} {local[0].platform} device(s)",
                        field="--devices")
    if B % n_dev:
        raise UserError(f"{B} rollouts do not split evenly over {n_dev} devices; choose rollouts divisible by "
                        f"{n_dev}", field="--devices")
    static = EngineStatic(
        level_name=level.name, env=level.env, H=H, n=n, B=B, T=T, action_dim=level.action_dim,
        # sync runs as naive (same computation); a label or checkpoint path never splits a compile
        method=NaiveMethod() if method.kind == "sync" else method.compute_key(),
        graphdef=graphdef, weak_graphdef=weak_graphdef if impl.uses_weak else None,
        record_actions=record_actions, n_devices=n_dev,
    )
    sched_j = {k: jnp.asarray(v.astype(bool) if v.dtype == bool else v.astype(np.int32)) for k, v in sched.items()}
    if n_dev > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(local[:n_dev], ("b",)), PartitionSpec("b"))
        sched_j = {k: jax.device_put(v, sharding) for k, v in sched_j.items()}
    args = (level.env_params, state, weak_state if impl.uses_weak else None, sched_j,
            jnp.asarray(env_seed, jnp.uint32), jnp.asarray(policy_seed, jnp.uint32), jnp.asarray(fallback == "zero"),
            jnp.asarray(bool(getattr(schedule, "reference_start", False))), jnp.asarray(first_rollout, jnp.uint32),
            used_mask(level.action_dim, used_action_dims(level)))
    compiled, compile_s, hit = _compiled_episode(static, args)
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    run_s = time.perf_counter() - t0
    out = jax.tree_util.tree_map(np.asarray, out)
    if out["stall_mismatch"].any():
        raise RuntimeError(
            f"engine stall steps disagree with the schedule's stall flags in "
            f"{int((out['stall_mismatch'] > 0).sum())} rollouts; the timeline contract is broken")

    head = {}
    if impl.corrects:
        evals = out["head_evals"]
        head = dict(head_evals_per_env_step=float(evals.sum()) / max(float(out["length"].sum()), 1.0),
                    **_a2c2_flops(graphdef, state, level.obs_dim, level.action_dim, H))
    inf_ms = inf_p10 = inf_p90 = float("nan")
    if time_inference:
        inf_ms, inf_p10, inf_p90 = _inference_ms(level, method, graphdef, state, static, weak_state if impl.uses_weak
                                                 else None, repeats=inference_repeats)
    per = {k: out[k] for k in PER_ROLLOUT_FIELDS}
    steps_first = float(per["length"].sum())
    extra = {"stall_steps_all": out["stall_steps_all"]}
    if record_actions:
        extra["actions"] = out["actions"]
    if impl.corrects:
        extra["head_evals"] = out["head_evals"]
    return CellOutput(
        per_rollout=per,
        compile_s=compile_s,
        run_s=run_s,
        env_steps_per_s=B * T / run_s,
        wasted_policy_evals=int(out["wasted_policy_evals"]),
        inference_ms=inf_ms,
        nfe_per_inference=impl.cost.nfe,
        vjp_per_inference=impl.cost.vjp,
        nfe_per_env_step=float(per["nfe"].sum()) / max(steps_first, 1.0),
        policy_calls=int(out["policy_calls"]),
        inference_ms_p10=inf_p10,
        inference_ms_p90=inf_p90,
        cache_hit=hit,
        device=str(local[0].platform) + (f" x{n_dev}" if n_dev > 1 else ""),
        extra=extra,
        **head,
    )


def _flops(fn, *args) -> float | None:
    """XLA's FLOP count of one call of fn(*args), or None where the backend gives none."""
    try:
        analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    except Exception:  # cost analysis is best effort: some backends do not implement it
        return None
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


_FLOPS: dict = {}  # (graphdef, dims) -> FLOP counts: they depend on the shapes alone, not on the weights


def _a2c2_flops(graphdef, state, obs_dim: int, action_dim: int, H: int) -> dict:
    """FLOPs of one head evaluation and of one policy forward pass, for one rollout (batch 1)."""
    key = (graphdef, obs_dim, action_dim, H)
    if key not in _FLOPS:
        _FLOPS[key] = _count_a2c2_flops(graphdef, state, obs_dim, action_dim, H)
    return dict(_FLOPS[key])


def _count_a2c2_flops(graphdef, state, obs_dim: int, action_dim: int, H: int) -> dict:
    obs, a = jnp.zeros((1, obs_dim), jnp.float32), jnp.zeros((1, action_dim), jnp.float32)
    t = jnp.zeros((1,), jnp.int32)
    head = _flops(lambda st, o, a_, t_: nnx.merge(graphdef, st).correction(o, a_, t_, o), state, obs, a, t)
    x, tau = jnp.zeros((1, H, action_dim), jnp.float32), jnp.zeros((1,), jnp.float32)
    policy = _flops(lambda st, o, x_, tau_: nnx.merge(graphdef, st).velocity(o, x_, tau_), state, obs, x, tau)
    return {"head_flops_per_eval": head, "policy_flops_per_nfe": policy}
