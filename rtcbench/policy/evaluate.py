"""Closed-loop evaluation of flow policies (the pipeline's own, kept apart from the benchmark), and the
outcome helpers that expert evaluation (`rtcbench.policy.expert`) shares. This module imports no other
pipeline module: experts import it, never the reverse.

Success counts only the first episode of each rollout: ``info["GoalR"]`` on its terminating step.
Kinetix action noise (0.1 std) is added to every executed action, as in training and in the benchmark.

Flow policies are evaluated in the reference benchmark's constant-delay style (`make_chunked_eval`):
every ``horizon`` (s) steps a new chunk is sampled from the current observation; during the next s
steps the controller executes the ``delay`` (d) actions that remained of the old chunk (``old[s:s+d]``),
then ``new[d:s]``. The first chunk is computed synchronously (d = 0). ``prefix="naive"`` ignores the
old chunk when sampling; ``prefix="ttrtc"`` feeds its first d remaining actions as clean tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.levels import ACTION_NOISE_STD
from rtcbench.stats import wilson_interval

DEFAULT_MAX_STEPS = 256  # kinetix EnvParams.max_timesteps: every first episode ends by then


def solve_summary(solved: np.ndarray, lengths: np.ndarray | None = None) -> dict:
    """Per-rollout bools [B] -> {rate, n, solved, wilson95, mean_length}."""
    solved = np.asarray(solved, bool)
    k, n = int(solved.sum()), int(solved.size)
    out = {"rate": k / max(n, 1), "n": n, "solved": k, "wilson95": list(wilson_interval(k, n))}
    if lengths is not None:
        out["mean_length"] = float(np.mean(lengths))
    return out


def first_episode_outcome(done: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
    """done, goal [T, B] bool -> (solved [B], length [B]) of each rollout's first episode."""
    T = done.shape[0]
    any_done = done.any(axis=0)  # [B]
    first = jnp.argmax(done, axis=0)  # [B]
    solved = any_done & jnp.take_along_axis(goal, first[None], axis=0)[0]
    length = jnp.where(any_done, first + 1, T)
    return solved, length


def action_chatter(actions: np.ndarray, lengths: np.ndarray) -> dict:
    """How much a policy's actions chatter, per action dim, inside each rollout's first episode.

    ``actions`` [T, B, A] (the policy's clean actions), ``lengths`` [B] (steps of the first episode).
    With delta_t = a_t - a_(t-1):

    - ``action_delta_abs_mean`` [A]: mean |delta_t|;
    - ``action_reversal_rate`` [A]: the fraction of steps where delta_t and delta_(t-1) have opposite
      signs (exact zeros count as no reversal). A period-2 oscillation a, b, a, b, ... gives 1.0, a
      monotone or constant sequence 0.0, and independent noise about 2/3.

    A period-2 chatter is one way a closed loop becomes sensitive to the *parity* of a delay: an action
    meant for step t and executed at t + d is in phase for even d and in anti-phase for odd d (see
    docs/study/single_mean/DISCUSSION.md for what this predicts and what was measured on l/h17_unicycle:packed).
    """
    actions = np.asarray(actions, np.float64)  # [T, B, A]
    T = actions.shape[0]
    t = np.arange(T)[:, None]  # [T, 1]
    delta = actions[1:] - actions[:-1]  # [T-1, B, A]: delta at steps 1..T-1
    valid_delta = (t[1:] < lengths[None, :])[..., None]  # [T-1, B, 1]
    reversal = (delta[1:] * delta[:-1]) < 0  # [T-2, B, A]: at steps 2..T-1
    valid_rev = (t[2:] < lengths[None, :])[..., None]  # [T-2, B, 1]
    n_delta, n_rev = max(int(valid_delta.sum()), 1), max(int(valid_rev.sum()), 1)
    return {"action_delta_abs_mean": [float(x) for x in (np.abs(delta) * valid_delta).sum(axis=(0, 1)) / n_delta],
            "action_reversal_rate": [float(x) for x in (reversal & valid_rev).sum(axis=(0, 1)) / n_rev]}


@dataclass(frozen=True)
class ChunkedEvalConfig:
    """Static settings of a constant-delay chunked evaluation."""

    n: int = 512  # rollouts
    delay: int = 0  # d
    horizon: int = 4  # s: steps between inference starts
    flow_steps: int = 5
    max_steps: int = DEFAULT_MAX_STEPS
    prefix: str = "naive"  # "naive" | "ttrtc"
    action_noise: float = ACTION_NOISE_STD


_CHUNKED_EVAL_CACHE: dict = {}


def make_chunked_eval(level, graphdef, H: int, cfg: ChunkedEvalConfig):
    """-> jitted ``evaluate(state, key) -> (solved [B], length [B])`` for a flow policy (graphdef, state)
    with chunk size H. Cached per (level, graphdef, H, cfg): policies of one architecture share a compile."""
    cache_key = (level.name, graphdef, H, cfg)
    if cache_key not in _CHUNKED_EVAL_CACHE:
        _CHUNKED_EVAL_CACHE[cache_key] = _make_chunked_eval(level, graphdef, H, cfg)
    return _CHUNKED_EVAL_CACHE[cache_key]


def _make_chunked_eval(level, graphdef, H: int, cfg: ChunkedEvalConfig):
    import flax.nnx as nnx

    from rtcbench.policy.ttrtc import sample_with_prefix

    d, s, B = cfg.delay, cfg.horizon, cfg.n
    if not (1 <= s and d >= 0 and s + d <= H and d <= s):
        raise ValueError(f"need 1 <= s, 0 <= d <= s and s + d <= H; got d={d}, s={s}")
    n_windows = -(-cfg.max_steps // s)

    def env_step(carry, xs):
        env_state, obs, finished, solved, length = carry
        action, key = xs  # [B, A]
        k_noise, k_env = jax.random.split(key)
        # No clip here, as in the engine: kinetix clips inside env.step (motors to [-1, 1], thrusters to
        # [0, 1]), so an out-of-range action reaches the physics exactly as its clipped self would
        # (tests/engine/test_action_range.py); a clip to [-1, 1] here only duplicated part of that.
        executed = action + cfg.action_noise * jax.random.normal(k_noise, action.shape)
        obs, env_state, _, done, info = jax.vmap(level.step)(jax.random.split(k_env, B), env_state, executed)
        newly = done & ~finished
        solved = solved | (newly & (info["GoalR"] > 0))
        length = length + (~finished).astype(jnp.int32)
        return (env_state, obs, finished | done, solved, length), None

    def window(carry, xs):
        env_state, obs, chunk, finished, solved, length, state = carry  # chunk [B, H, A]
        k, key = xs
        model = nnx.merge(graphdef, state)
        k_flow, k_env = jax.random.split(key)
        d_eff = jnp.where(k == 0, 0, d)  # the first chunk is synchronous
        prefix = jnp.concatenate([chunk[:, s:], jnp.zeros_like(chunk[:, :s])], axis=1)  # [B, H, A]: old[s:] padded
        if cfg.prefix == "ttrtc":
            new = sample_with_prefix(model, k_flow, obs, prefix, jnp.full((B,), d_eff), cfg.flow_steps)
        else:
            new = model.sample(k_flow, obs, cfg.flow_steps)  # [B, H, A]
        idx = jnp.arange(s)
        take_old = (idx < d_eff)[None, :, None]  # [1, s, 1]
        actions = jnp.where(take_old, prefix[:, :s], new[:, :s])  # [B, s, A]
        (env_state, obs, finished, solved, length), _ = jax.lax.scan(
            env_step,
            (env_state, obs, finished, solved, length),
            (jnp.swapaxes(actions, 0, 1), jax.random.split(k_env, s)),
        )
        return (env_state, obs, new, finished, solved, length, state), None

    @jax.jit
    def evaluate(state, key):
        k_reset, k_windows = jax.random.split(key)
        obs, env_state = jax.vmap(level.reset)(jax.random.split(k_reset, B))
        chunk = jnp.zeros((B, H, level.action_dim))
        zeros_b = jnp.zeros(B, bool)
        window_keys = jax.random.split(k_windows, n_windows)

        # Stop as soon as every rollout's first episode has ended: later steps cannot change the outcome.
        def cond(loop):
            k, carry = loop
            return (k < n_windows) & ~jnp.all(carry[3])

        def body(loop):
            k, carry = loop
            carry, _ = window(carry, (k, window_keys[k]))
            return k + 1, carry

        carry = (env_state, obs, chunk, zeros_b, zeros_b, jnp.zeros(B, jnp.int32), state)
        _, carry = jax.lax.while_loop(cond, body, (jnp.int32(0), carry))
        _, _, _, _, solved, length, _ = carry
        return solved, length

    return evaluate


def evaluate_flow_policy(level, graphdef, state, H: int, cfg: ChunkedEvalConfig, seed: int) -> dict:
    """Constant-delay chunked evaluation -> solve summary plus the eval settings and wall time."""
    import time

    t0 = time.perf_counter()
    evaluate = make_chunked_eval(level, graphdef, H, cfg)
    solved, length = jax.device_get(evaluate(state, jax.random.PRNGKey(seed)))
    out = solve_summary(solved, length)
    out.update(delay=cfg.delay, horizon=cfg.horizon, flow_steps=cfg.flow_steps, prefix=cfg.prefix,
               max_steps=cfg.max_steps, action_noise=cfg.action_noise, seed=seed,
               wall_s=round(time.perf_counter() - t0, 1))
    return out


def evaluate_baseline(level, kind: str, n: int, seed: int, max_steps: int = DEFAULT_MAX_STEPS) -> dict:
    """Solve rate of a policy-free baseline: ``zero`` actions or ``random`` uniform actions in [-1, 1],
    with the usual 0.1 action noise. A level that these solve often is too easy to tell methods apart."""

    def step(carry, key):
        env_state = carry
        k_act, k_noise, k_env = jax.random.split(key, 3)
        if kind == "random":
            action = jax.random.uniform(k_act, (n, level.action_dim), minval=-1.0, maxval=1.0)
        else:
            action = jnp.zeros((n, level.action_dim))
        executed = action + ACTION_NOISE_STD * jax.random.normal(k_noise, action.shape)  # kinetix clips (see above)
        _, env_state, _, done, info = jax.vmap(level.step)(jax.random.split(k_env, n), env_state, executed)
        return env_state, (done, info["GoalR"] > 0)

    @jax.jit
    def rollout(key):
        k_reset, k_steps = jax.random.split(key)
        _, env_state = jax.vmap(level.reset)(jax.random.split(k_reset, n))
        _, (done, goal) = jax.lax.scan(step, env_state, jax.random.split(k_steps, max_steps))
        return first_episode_outcome(done, goal)

    solved, length = jax.device_get(rollout(jax.random.PRNGKey(seed)))
    return solve_summary(solved, length) | {"baseline": kind}
