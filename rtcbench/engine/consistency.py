"""How closely a method's new chunk honours the frozen prefix: the inpainting error of one inference.

At an inference with s actions consumed and forecast dhat, the prefix is ``A[s:]`` (padded) and the
first dhat of its actions are executed while the new chunk is computed (docs/DESIGN.md §1). The new chunk is
sampled from the observation *at that inference*, s steps after A was sampled, so its position i and
the prefix's position i (= A[s + i]) plan the same control step. A method that is consistent across
chunks returns a chunk whose first dhat actions equal the prefix's:

    step          t    t+1  t+2  t+3  t+4  t+5  t+6  t+7  t+8  t+9
    old chunk A   a0   a1   a2   a3   a4   a5   a6   a7             sampled at o_t; a0 a1 executed
    new chunk B             b0   b1   b2   b3   b4   b5   b6   b7   sampled at o_(t+s), s = 2
    prefix                  a2   a3   a4   a5   a6   a7   0    0    real positions i < H - s = 6
    frozen error   mean |b_i - a_(s+i)|, i < dhat          (dhat = 2: b0 b1 vs a2 a3: what RTC inpaints)
    band error     mean |b_i - a_(s+i)|, dhat <= i < H - s (the soft-masked overlap)

`aligned_overlap_distance` is that comparison over the whole overlap (i < H - s). An earlier version
sampled B from o_t, the old chunk's own observation, and so compared b_i with a_(s+i) planned for a step
s later: its numbers (an odd/even pattern in s) are withdrawn.

States come from the policy's own closed loop (`aligned_states`): B rollouts from the level's reset, each
running the policy's fresh chunk (d = 0, s = 1, 0.1-std action noise) for ``warmup`` steps; the old chunk
is sampled at the last of those steps, its first s actions are executed (with noise), and every method
gets the same old chunk, the observation reached, and the same flow noise. Nothing here is timed; it
explains a method's behaviour, it is not a benchmark cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.levels import ACTION_NOISE_STD, used_action_dims
from rtcbench.methods.dispatch import make_method
from rtcbench.methods.naive import euler_sample, flow_noise
from rtcbench.methods.weights import shift_prefix


def aligned_states(level, policy, *, B: int, warmup: int, s: int, n: int, seed: int):
    """-> (obs [B, O], old chunk [B, H, A]): the old chunk sampled at the closed loop's step ``warmup``
    (d = 0, s = 1 before it) and the observation after executing its first s actions."""
    H, A = policy.cfg.H, level.action_dim
    key = jax.random.PRNGKey(seed)
    obs, state = jax.vmap(level.reset)(jax.random.split(jax.random.fold_in(key, 0), B))

    def step(carry, j):
        obs, state, _ = carry
        k = jax.random.fold_in(key, j + 1)
        k_flow, k_noise, k_env = jax.random.split(k, 3)
        chunk = euler_sample(policy, obs, flow_noise(jax.random.split(k_flow, B), H, A), n)  # [B, H, A]
        action = chunk[:, 0] + ACTION_NOISE_STD * jax.random.normal(k_noise, (B, A))
        obs_next, state, *_ = jax.vmap(level.step)(jax.random.split(k_env, B), state, action)
        return (obs_next, state, chunk), None

    zeros = jnp.zeros((B, H, A))
    (obs, state, old), _ = jax.lax.scan(step, (obs, state, zeros), jnp.arange(warmup))
    # `old` was sampled at step warmup - 1 and its first action executed; execute s - 1 more of it.
    for i in range(1, s):
        k_noise, k_env = jax.random.split(jax.random.fold_in(key, 1_000_000 + i))
        action = old[:, i] + ACTION_NOISE_STD * jax.random.normal(k_noise, (B, A))
        obs, state, *_ = jax.vmap(level.step)(jax.random.split(k_env, B), state, action)
    return obs, old


def aligned_overlap_distance(old: jax.Array, new: jax.Array, s: int, dims) -> jax.Array:
    """old, new [B, H, A] with new sampled s steps after old -> [B, H - s]: mean over ``dims`` of
    |new[:, i] - old[:, s + i]| for i < H - s (both plan the same control step)."""
    H = old.shape[1]
    dims = jnp.asarray(dims)
    return jnp.abs(new[:, : H - s] - old[:, s:])[..., dims].mean(axis=-1)


def inpainting_errors(level, policy, methods, *, d: int, s: int, B: int = 256, warmup: int = 20, n: int = 5,
                      seed: int = 0) -> list[dict]:
    """One dict per method: mean |new - prefix| over the frozen positions (i < d) and the band (d <= i < H - s),
    over the B states and the action dimensions the level uses (`used_action_dims`; the others drive
    nothing). methods: MethodConfig objects (their label names them)."""
    H = policy.cfg.H
    if not (0 <= d and 1 <= s < H):
        raise ValueError(f"need d >= 0 and 1 <= s < H, got d={d}, s={s}")
    obs, old = jax.jit(lambda: aligned_states(level, policy, B=B, warmup=warmup, s=s, n=n, seed=seed))()
    prefix = shift_prefix(old, jnp.full((B,), s))  # [B, H, A]
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed + 1), jnp.arange(B))
    dhat, s_arr = jnp.full((B,), d), jnp.full((B,), s)
    dims = used_action_dims(level)
    out = []
    for method in methods:
        impl = make_method(method, n=n)
        chunk, _ = jax.jit(lambda o, p, dh, sv, k, fn=impl.fn: fn(policy, o, p, dh, sv, k))(obs, prefix, dhat, s_arr,
                                                                                                keys)
        err = np.asarray(aligned_overlap_distance(old, chunk, s, dims).mean(axis=0))  # [H - s]
        frozen = float(err[: min(d, H - s)].mean()) if min(d, H - s) > 0 else float("nan")
        band = float(err[d:].mean()) if H - s > d else float("nan")
        out.append({"method": method.label, "d": d, "s": s, "B": B, "action_dims": [int(i) for i in dims],
                    "frozen_error": frozen, "band_error": band, "aligned": True})
    return out
