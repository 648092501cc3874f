"""Helpers shared by the engine tests: small schedules, a run wrapper, and a host-side controller loop
that re-implements the timeline independently of the engine (jitted env step + jitted method call)."""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.engine.rollout import (
    action_noise,
    env_reset_keys,
    env_rollout_keys,
    env_step_keys,
    first_chunk,
    inference_keys,
    policy_rollout_keys,
)

LEVEL = "s/h8_unicycle_balance"
B, T, H, N_FLOW = 8, 64, 8, 5
ENV_SEED, POLICY_SEED = 7, 11


def make_schedule(d, dhat=None, *, s_min=3, world_pauses=False, T_=T, start="sync"):
    """Schedule from a [B, K] delay array (adaptive horizon) via the replay package."""
    from rtcbench.replay.horizon import AdaptiveHorizon
    from rtcbench.replay.schedule import schedule_from_delays

    d = np.asarray(d, np.int64)
    dhat = d if dhat is None else np.asarray(dhat, np.int64)
    return schedule_from_delays(d, dhat, horizon=AdaptiveHorizon(s_min=s_min), H=H, max_steps=T_,
                                world_pauses=world_pauses, start=start)


def three_delay_setups(seed: int = 0) -> dict:
    """fixed, mixture (categorical base + 5% spikes) and trace-resampled delays, each [B, T] steps."""
    rng = np.random.default_rng(seed)
    fixed = np.full((B, T), 2)
    base = rng.choice([1, 2, 3], size=(B, T), p=[0.3, 0.5, 0.2])
    mixture = np.where(rng.random((B, T)) < 0.05, 9, base)
    trace_ms = np.array([41.0, 55.2, 38.9, 120.5, 47.3, 62.0, 300.1, 44.4])  # ms latencies
    trace = np.ceil(trace_ms[rng.integers(0, len(trace_ms), (B, T))] / 33.3).astype(np.int64)
    return {"fixed": fixed, "mixture": mixture, "trace": trace}


def run(level, policy, method, schedule, **kw):
    from rtcbench.engine import run_cell

    kw.setdefault("env_seed", ENV_SEED)
    kw.setdefault("policy_seed", POLICY_SEED)
    kw.setdefault("time_inference", False)
    return run_cell(level, policy, method, schedule, H=H, n=N_FLOW, max_steps=schedule.start.shape[1],
                    record_actions=True, **kw)


class EnvLoop:
    """Jitted reset and step with the engine's key derivation (compiled once per session)."""

    def __init__(self, level):
        self.level, self.Ad = level, level.action_dim
        ek = env_rollout_keys(ENV_SEED, B)

        def step(j, state, a):
            sk, nk = env_step_keys(ek, j)
            obs, state, *_ = jax.vmap(level.env.step, (0, 0, 0, None))(sk, state, a + action_noise(nk, self.Ad),
                                                                       level.env_params)
            return obs, state

        self.step = jax.jit(step)
        self.reset = jax.jit(lambda: jax.vmap(level.env.reset, (0, None))(env_reset_keys(ek), level.env_params))


class Loop:
    """A host-side controller: the method's chunk function jitted alone, the env stepped one step at a time."""

    def __init__(self, env: EnvLoop, policy, chunk_fn):
        self.env, self.Ad = env, env.Ad
        graphdef, self.pstate = nnx.split(policy)
        self.chunk = jax.jit(lambda st, *a: chunk_fn(nnx.merge(graphdef, st), *a)[0])
        self.first = jax.jit(lambda st, obs, pk: first_chunk(nnx.merge(graphdef, st), obs, pk, H, self.Ad, N_FLOW))
        self.pk = policy_rollout_keys(POLICY_SEED, B)

    def reset(self):
        self.obs, self.state = self.env.reset()
        self.j, self.actions = 0, []
        return self.first(self.pstate, self.obs, self.pk)  # [B, H, A] synchronous first chunk

    def execute(self, a):  # a [B, A]
        self.obs, self.state = self.env.step(self.j, self.state, a)
        self.actions.append(np.asarray(a))
        self.j += 1

    def new_chunk(self, prefix, dhat, s):
        return self.chunk(self.pstate, self.obs, prefix, jnp.full((B,), dhat), jnp.full((B,), s),
                          inference_keys(self.pk, self.j))

    def recorded(self) -> np.ndarray:
        return np.stack(self.actions, axis=1)  # [B, T, A]


def chunk_level_loop(loop: Loop, d: int, s: int) -> np.ndarray:
    """Fixed d <= s: at every start, execute d old actions A[s:s+d], then new[d:s]."""
    A = loop.reset()
    for i in range(s):
        loop.execute(A[:, i])
    while loop.j < T:
        prefix = jnp.concatenate([A[:, s:], jnp.zeros((B, s, loop.Ad))], axis=1)  # A[s:] padded to H
        new = loop.new_chunk(prefix, d, s)
        for a in [A[:, s + i] for i in range(d)] + [new[:, i] for i in range(d, s)]:
            if loop.j < T:
                loop.execute(a)
        A = new
    return loop.recorded()


def reference_loop(loop: Loop, d: int, s: int) -> np.ndarray:
    """The RTC reference's eval loop as its code comments describe it (Black et al. 2025, eval_flow.py),
    written as a plain loop: a first chunk from the first observation; then, every s steps, a new chunk
    from the current observation with the current chunk as prefix (no action consumed yet in the first
    iteration; afterwards the chunk shifted by s and zero-padded), executing d actions of the current
    chunk and then the new chunk's actions d..s-1."""
    chunk = loop.reset()
    while loop.j < T:
        new = loop.new_chunk(chunk, d, s)
        for a in [chunk[:, i] for i in range(d)] + [new[:, i] for i in range(d, s)]:
            if loop.j < T:
                loop.execute(a)
        chunk = jnp.concatenate([new[:, s:], jnp.zeros((B, s, loop.Ad))], axis=1)
    return loop.recorded()


def closed_loop(loop: Loop, te_m: float | None = None) -> np.ndarray:
    """d = 0, s = 1: a chunk every step; execute its first action, or (te_m given) the ACT ensemble of all
    chunks that cover the step, weights exp(-te_m * i) with i = 0 for the oldest."""
    chunks = [loop.reset()]
    for j in range(T):
        if j > 0:
            chunks.append(loop.new_chunk(jnp.zeros((B, H, loop.Ad)), 0, 1))
        if te_m is None:
            loop.execute(chunks[-1][:, 0])
            continue
        covering = [(chunks[tau], j - tau) for tau in range(max(0, j - H + 1), j + 1)]  # oldest first
        w = np.exp(-te_m * np.arange(len(covering)))
        a = sum(wi * np.asarray(c[:, idx]) for wi, (c, idx) in zip(w, covering, strict=True)) / w.sum()
        loop.execute(jnp.asarray(a, jnp.float32))
    return loop.recorded()


def assert_same_actions(engine_actions, loop_actions):
    # Same keys and the same computation, compiled separately: allow float32 rounding only.
    np.testing.assert_allclose(engine_actions, loop_actions, rtol=1e-4, atol=1e-4)
