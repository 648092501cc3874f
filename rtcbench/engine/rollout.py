"""The jitted episode: one pure function of (static config, traced inputs) -> per-rollout metrics.

Per control step j, for all B rollouts at once (docs/DESIGN.md §1; the schedule's arrays drive all timing):

    1. swap     where arrive[:, j]:  A <- pending, t <- pending_d           (chunk started at an earlier step)
    2. start    where start[:, j]:   new = method(policy, obs, A[shift:] padded, dhat, s, key)
                                     d == 0 -> A <- new, t <- 0 at once;  d > 0 -> pending <- new
                the policy runs under lax.cond(any rollout starts): steps where none starts cost nothing
    3. execute  a = A[t] if t < H else fallback (hold: last executed action, or zero) -> a stall step
                (a2c2: a = A[t] + correction(obs now, A[t], t, obs the chunk was computed from), not on stalls)
                t += 1;  env.step(a + 0.1 * N(0, 1))  (noise from the env key)

Step 0 is the synchronous first chunk: a plain Euler sample computed before the scan (the schedule's
k = 0 start at step 0, d = dhat = s = 0, is consumed there). Under the schedule's ``reference_start``
(the RTC reference's start-up, rtcbench.replay.schedule) step 0 also starts inference 1, from the first
observation with the whole first chunk as its prefix (shift 0). ``shift`` is the schedule's prefix shift
(= s except there). `te` executes the weighted average of all
arrived predictions for the step (see rtcbench.methods.te) instead of A[t]. `a2c2` (a static flag of the
method, rtcbench.methods.a2c2) runs its base method's inferences and corrects each executed chunk action
with the policy's head (the head's weights are part of the traced policy state); only its episode carries
the observation each chunk was computed from (``A_obs``, ``pend_obs``) and counts head evaluations.

Keys (common random numbers): rollout b's env key is fold_in(PRNGKey(env_seed), b), b counted over the
whole cell (a shard of rollouts [lo, hi) passes first_rollout = lo); step j uses
fold_in(env_key_b, j + 1) split into (step key, action-noise key); the reset uses fold_in(env_key_b, 0).
Flow noise of the inference started at step j is fold_in(fold_in(PRNGKey(policy_seed), b), j), the
first chunk's included (j = 0); an inference started at step 0 after it (reference start) uses
fold_in(that key, 1) (`inference_keys`).
None of them depend on the method or on the delays, so every method sees the same env randomness.

Metrics count the first episode only (the env auto-resets; later episodes are simulated but ignored),
except `stall_steps_all` and `stall_mismatch`, which cover all T steps to check the engine against
the schedule. Smoothness (`rtcbench.engine.smoothness`) uses the commanded actions (before the 0.1-std env
noise), over the level's used action dimensions (`used_mask`, a traced [A] input) and over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.nnx as nnx
import jax
import jax.numpy as jnp

from rtcbench.engine import smoothness
from rtcbench.levels import ACTION_NOISE_STD
from rtcbench.methods.a2c2 import corrected_action
from rtcbench.methods.dispatch import make_method
from rtcbench.methods.naive import euler_sample, flow_noise
from rtcbench.methods.te import ensemble
from rtcbench.methods.weights import shift_prefix

FALLBACKS = ("hold", "zero")


@dataclass(frozen=True)
class EngineStatic:
    """Everything shape-bearing or control-flow-bearing: the compile key of the episode function."""

    level_name: str  # part of the key: two levels may share static params but not their fixed state
    env: Any  # kinetix env (hashable by its static params and reset function)
    H: int
    n: int
    B: int
    T: int
    action_dim: int
    method: Any  # MethodConfig (frozen pydantic model, hashable); `sync` runs as `naive` (same computation)
    graphdef: Any  # nnx.GraphDef of the policy
    weak_graphdef: Any = None  # nnx.GraphDef of BID's weak policy, or None
    record_actions: bool = False  # also return the executed actions [B, T, A] (tests)
    n_devices: int = 1  # shard rollouts over this many devices (B divisible by it)


def env_rollout_keys(env_seed, B: int, first_rollout=0) -> jax.Array:
    """[B, 2]: the env keys of rollouts first_rollout .. first_rollout + B - 1 (the same under every
    method; a shard of a cell passes its first rollout's index, so its keys are the whole cell's)."""
    ids = jnp.asarray(first_rollout, jnp.uint32) + jnp.arange(B, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(env_seed), ids)


def env_step_keys(env_keys: jax.Array, j) -> tuple[jax.Array, jax.Array]:
    """Keys of step j: (env step keys [B, 2], action-noise keys [B, 2])."""
    k = jax.vmap(jax.random.fold_in, (0, None))(env_keys, j + 1)
    pair = jax.vmap(jax.random.split)(k)  # [B, 2, 2]
    return pair[:, 0], pair[:, 1]


def env_reset_keys(env_keys: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, (0, None))(env_keys, 0)


def policy_rollout_keys(policy_seed, B: int, first_rollout=0) -> jax.Array:
    """[B, 2]: the policy keys of rollouts first_rollout .. first_rollout + B - 1."""
    ids = jnp.asarray(first_rollout, jnp.uint32) + jnp.arange(B, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(policy_seed), ids)


def policy_step_keys(policy_keys: jax.Array, j) -> jax.Array:
    """[B, 2]: flow-noise keys of the inference that starts at step j."""
    return jax.vmap(jax.random.fold_in, (0, None))(policy_keys, j)


def inference_keys(policy_keys: jax.Array, j) -> jax.Array:
    """[B, 2]: flow-noise keys of the inference that starts at step j > 0, or of the reference start's
    inference 1 at step 0 (the synchronous first chunk already used policy_step_keys(., 0))."""
    keys = policy_step_keys(policy_keys, j)
    again = jax.vmap(jax.random.fold_in, (0, None))(keys, 1)
    return jnp.where(j == 0, again, keys)


def action_noise(noise_keys: jax.Array, action_dim: int) -> jax.Array:
    """[B, 2] -> [B, action_dim] of N(0, ACTION_NOISE_STD^2)."""
    return ACTION_NOISE_STD * jax.vmap(lambda k: jax.random.normal(k, (action_dim,)))(noise_keys)


def first_chunk(policy, obs, policy_keys, H: int, action_dim: int, n: int) -> jax.Array:
    """The synchronous chunk at step 0: a plain Euler sample (no prefix exists yet). -> [B, H, A]."""
    return euler_sample(policy, obs, flow_noise(policy_step_keys(policy_keys, 0), H, action_dim), n)


def _shard(x, static: EngineStatic):
    """Constrain a [B, ...] array to be split over devices along B (no-op on one device)."""
    if static.n_devices <= 1:
        return x
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(jax.devices()[: static.n_devices], ("b",))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec("b")))


def episode(static: EngineStatic, env_params, pol_state, weak_state, sched: dict, env_seed, policy_seed,
            fallback_zero, reference_start, first_rollout, used_mask) -> dict:
    """Run B rollouts for T steps. sched: dict of [B, T] arrays (start, start_d, start_dhat, start_s,
    start_shift, arrive, stall, pause). fallback_zero: traced bool (True: `zero` fallback, False: `hold`).
    reference_start: traced bool, the step-0 start is inference 1 of the reference start-up (run it),
    not the synchronous first chunk (skip it). first_rollout: traced uint32, the cell-wide index of
    row 0 (0 for a whole cell; a shard's offset), so a shard's rollouts get the whole cell's keys.
    used_mask: [A] float32, 1 on the action dimensions the level uses (smoothness is measured there).
    Returns a dict of per-rollout metrics [B] and scalars (see module docstring)."""
    H, B, T, Ad = static.H, static.B, static.T, static.action_dim
    env = static.env
    impl = make_method(static.method, n=static.n, has_weak=static.weak_graphdef is not None)
    policy = nnx.merge(static.graphdef, pol_state)
    weak = nnx.merge(static.weak_graphdef, weak_state) if impl.uses_weak else None
    method_fn = (lambda *a: impl.fn(*a, weak=weak)) if impl.uses_weak else impl.fn
    te_on = impl.ensemble_m is not None
    corrects = impl.corrects

    env_keys = env_rollout_keys(env_seed, B, first_rollout)  # [B, 2]
    pol_keys = policy_rollout_keys(policy_seed, B, first_rollout)  # [B, 2]
    obs, state = jax.vmap(env.reset, (0, None))(env_reset_keys(env_keys), env_params)  # [B, O]
    obs = _shard(obs, static)
    A0 = first_chunk(policy, obs, pol_keys, H, Ad, static.n)  # [B, H, A]

    i32, f32 = jnp.int32, jnp.float32
    zB = jnp.zeros((B,), i32)
    carry = dict(
        obs=obs, state=state,
        A=A0, t=zB,  # current chunk [B, H, A], next index [B]
        pend=jnp.zeros_like(A0), pend_d=zB, pend_tau=zB,  # in-flight chunk and its d, start step
        last=jnp.zeros((B, Ad), f32), prev=jnp.zeros((B, Ad), f32),  # a_{t-1}, a_{t-2}
        alive=jnp.ones((B,), bool), n_exec=zB,
        ret=jnp.zeros((B,), f32), length=zB, solved=jnp.zeros((B,), bool),
        stall_steps=zB, stall_all=zB, mismatch=zB, wall=zB, n_inf=jnp.ones((B,), i32),
        smooth=smoothness.init(B),
        wasted=jnp.zeros((), i32), policy_calls=jnp.zeros((), i32),
    )
    if corrects:  # the observation each chunk was computed from, and head evaluations per rollout
        carry.update(A_obs=obs, pend_obs=jnp.zeros_like(obs), head_evals=zB)
    if te_on:  # ring of the last H arrived chunks (slot = arrival count mod H)
        carry.update(
            buf=jnp.zeros((B, H, H, Ad), f32).at[:, 0].set(A0),  # [B, slot, H, A]
            buf_tau=zB[:, None].repeat(H, 1), buf_ok=jnp.zeros((B, H), bool).at[:, 0].set(True),
            buf_n=jnp.ones((B,), i32),
        )

    def te_insert(c, mask, chunk, tau):
        slot = jax.nn.one_hot(c["buf_n"] % H, H, dtype=bool) & mask[:, None]  # [B, H]
        c["buf"] = jnp.where(slot[:, :, None, None], chunk[:, None], c["buf"])
        c["buf_tau"] = jnp.where(slot, tau[:, None], c["buf_tau"])
        c["buf_ok"] = c["buf_ok"] | slot
        c["buf_n"] = c["buf_n"] + mask
        return c

    def body(c, x):
        j, start, sd, sdh, ss, shift, arrive, sched_stall, pause = x
        c = dict(c)
        # 1. swap in a chunk that was started at an earlier step and lands now
        if te_on:
            c = te_insert(c, arrive, c["pend"], c["pend_tau"])
        A = jnp.where(arrive[:, None, None], c["pend"], c["A"])  # [B, H, A]
        t = jnp.where(arrive, c["pend_d"], c["t"])  # [B]
        if corrects:
            c["A_obs"] = jnp.where(arrive[:, None], c["pend_obs"], c["A_obs"])
        # 2. start an inference (policy evaluated only when some rollout starts)
        start = start & ((j > 0) | reference_start)  # k = 0 was the synchronous first chunk
        any_start = jnp.any(start)
        prefix = shift_prefix(A, shift)  # [B, H, A]
        new = jax.lax.cond(  # the keys too are derived only on steps where some rollout starts
            any_start,
            lambda: method_fn(policy, c["obs"], prefix, sdh, ss, inference_keys(pol_keys, j))[0].astype(f32),
            lambda: jnp.zeros((B, H, Ad), f32),
        )  # [B, H, A]
        now, later = start & (sd == 0), start & (sd > 0)
        A = jnp.where(now[:, None, None], new, A)
        t = jnp.where(now, 0, t)
        if te_on:
            c = te_insert(c, now, new, jnp.full((B,), j, i32))
        c["pend"] = jnp.where(later[:, None, None], new, c["pend"])
        c["pend_d"] = jnp.where(later, sd, c["pend_d"])
        c["pend_tau"] = jnp.where(later, j, c["pend_tau"])
        if corrects:
            c["A_obs"] = jnp.where(now[:, None], c["obs"], c["A_obs"])
            c["pend_obs"] = jnp.where(later[:, None], c["obs"], c["pend_obs"])
        n_start = start.sum(dtype=i32)
        c["wasted"] = c["wasted"] + jnp.where(any_start, B - n_start, 0)
        c["policy_calls"] = c["policy_calls"] + any_start.astype(i32)
        # 3. execute A[t] or the fallback
        stall = t >= H  # [B]
        a = jnp.take_along_axis(A, jnp.clip(t, 0, H - 1)[:, None, None], axis=1)[:, 0]  # [B, A]
        if te_on:
            a, _ = ensemble(c["buf"], c["buf_tau"], c["buf_ok"], j, impl.ensemble_m)
        if corrects:
            a = corrected_action(policy, c["obs"], a, jnp.clip(t, 0, H - 1), c["A_obs"])
            c["head_evals"] = c["head_evals"] + (c["alive"] & ~stall)
        fb = jnp.where(fallback_zero, 0.0, c["last"])  # [B, A]
        a = jnp.where(stall[:, None], fb, a)  # [B, A] commanded action
        step_keys, noise_keys = env_step_keys(env_keys, j)
        obs, state, reward, done, info = jax.vmap(env.step, (0, 0, 0, None))(
            step_keys, c["state"], a + action_noise(noise_keys, Ad), env_params
        )
        # metrics (first episode only)
        alive = c["alive"]
        ok1, ok2 = alive & (c["n_exec"] >= 1), alive & (c["n_exec"] >= 2)
        out = dict(
            obs=_shard(obs, static), state=state, A=A, t=t + 1,
            last=a, prev=c["last"], n_exec=c["n_exec"] + alive,
            alive=alive & ~done,
            ret=c["ret"] + jnp.where(alive, reward, 0.0),
            length=c["length"] + alive,
            solved=c["solved"] | (alive & done & info["GoalR"]),
            stall_steps=c["stall_steps"] + (alive & stall),
            stall_all=c["stall_all"] + stall,
            mismatch=c["mismatch"] + (stall != sched_stall),
            wall=c["wall"] + jnp.where(alive, 1 + pause, 0),
            n_inf=c["n_inf"] + (alive & start),
            smooth=smoothness.accumulate(c["smooth"], a, c["last"], c["prev"], ok1, ok2, used_mask),
        )
        c.update(out)
        return c, (a if static.record_actions else None)

    xs = (
        jnp.arange(T, dtype=i32),
        *(jnp.asarray(sched[k]).T for k in ("start", "start_d", "start_dhat", "start_s", "start_shift", "arrive", "stall",
                                             "pause")),
    )  # each [T, B]
    c, acts = jax.lax.scan(body, carry, xs)
    cost = impl.cost
    length = c["length"]
    res = dict(
        solved=c["solved"],
        **{"return": c["ret"]},
        length=length,
        **smoothness.summarize(c["smooth"], length),
        stall_steps=c["stall_steps"],
        wall_steps=c["wall"],
        n_inferences=c["n_inf"],
        nfe=c["n_inf"] * cost.nfe,
        vjp=c["n_inf"] * cost.vjp,
        stall_steps_all=c["stall_all"],
        stall_mismatch=c["mismatch"],
        wasted_policy_evals=c["wasted"],
        policy_calls=c["policy_calls"],
    )
    if corrects:
        res["head_evals"] = c["head_evals"]  # [B]: first-episode steps that ran the correction head
    if static.record_actions:
        res["actions"] = jnp.swapaxes(acts, 0, 1)  # [B, T, A]
    return res
