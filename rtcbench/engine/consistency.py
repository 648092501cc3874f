"""How closely a method's new chunk honours the frozen prefix: the inpainting error of one inference.

At an inference with s actions consumed and forecast dhat, the prefix is ``A[s:]`` (padded) and the
first dhat of its actions are executed while the new chunk is computed (DESIGN.md §1). A method that is
consistent across chunks returns a chunk whose first dhat actions equal them:

    old chunk A    [a0 a1 a2 a3 a4 a5 a6 a7]         s = 2, dhat = 2
    prefix         [a2 a3 a4 a5 a6 a7  0  0]         real positions i < H - s = 6
    new chunk      [b0 b1 b2 b3 b4 b5 b6 b7]
    frozen error   mean |b_i - prefix_i|, i < dhat          (b0 b1 vs a2 a3: what RTC inpaints)
    band error     mean |b_i - prefix_i|, dhat <= i < H - s (the soft-masked overlap)

States come from the policy's own closed loop: B rollouts from the level's reset, each running the
policy's fresh chunk (d = 0, s = 1, 0.1-std action noise) for ``warmup`` steps; the old chunk is the one
sampled at the last of those steps, and every method gets the same old chunk, observation and flow noise.
Nothing here is timed; it explains a method's behaviour, it is not a benchmark cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.levels import ACTION_NOISE_STD, used_action_dims
from rtcbench.methods.dispatch import make_method
from rtcbench.methods.naive import euler_sample, flow_noise
from rtcbench.methods.weights import shift_prefix


def closed_loop_states(level, policy, *, B: int, warmup: int, n: int, seed: int):
    """-> (obs [B, O], old chunk [B, H, A]) after ``warmup`` closed-loop steps at d = 0, s = 1."""
    H, A = policy.cfg.H, level.action_dim
    key = jax.random.PRNGKey(seed)
    obs, state = jax.vmap(level.reset)(jax.random.split(jax.random.fold_in(key, 0), B))

    def step(carry, j):
        obs, state = carry
        k = jax.random.fold_in(key, j + 1)
        k_flow, k_noise, k_env = jax.random.split(k, 3)
        chunk = euler_sample(policy, obs, flow_noise(jax.random.split(k_flow, B), H, A), n)  # [B, H, A]
        action = chunk[:, 0] + ACTION_NOISE_STD * jax.random.normal(k_noise, (B, A))
        obs_next, state, *_ = jax.vmap(level.step)(jax.random.split(k_env, B), state, action)
        return (obs_next, state), (obs, chunk)

    _, (obs_t, chunks_t) = jax.lax.scan(step, (obs, state), jnp.arange(warmup))
    return obs_t[-1], chunks_t[-1]


def inpainting_errors(level, policy, methods, *, d: int, s: int, B: int = 256, warmup: int = 20, n: int = 5,
                      seed: int = 0) -> list[dict]:
    """One dict per method: mean |new - prefix| over the frozen positions (i < d) and the band (d <= i < H - s),
    over the B states and the action dimensions the level uses (`used_action_dims`; the others drive
    nothing). methods: MethodConfig objects (their label names them)."""
    H = policy.cfg.H
    if not (0 <= d and 0 <= s <= H):
        raise ValueError(f"need d >= 0 and 0 <= s <= H, got d={d}, s={s}")
    obs, old = jax.jit(lambda: closed_loop_states(level, policy, B=B, warmup=warmup, n=n, seed=seed))()
    prefix = shift_prefix(old, jnp.full((B,), s))  # [B, H, A]
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed + 1), jnp.arange(B))
    dhat, s_arr = jnp.full((B,), d), jnp.full((B,), s)
    dims = jnp.asarray(used_action_dims(level))
    out = []
    for method in methods:
        impl = make_method(method, n=n)
        chunk, _ = jax.jit(lambda o, p, dh, sv, k, fn=impl.fn: fn(policy, o, p, dh, sv, k))(obs, prefix, dhat, s_arr,
                                                                                                keys)
        err = np.asarray(jnp.abs(chunk - prefix)[..., dims].mean(axis=(0, 2)))  # [H]
        frozen = float(err[: min(d, H - s)].mean()) if min(d, H - s) > 0 else float("nan")
        band = float(err[d : H - s].mean()) if H - s > d else float("nan")
        out.append({"method": method.label, "d": d, "s": s, "B": B, "action_dims": [int(i) for i in dims],
                    "frozen_error": frozen, "band_error": band})
    return out
