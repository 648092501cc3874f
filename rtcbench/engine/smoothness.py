"""Smoothness of the executed (commanded) actions, accumulated step by step inside the jitted episode.

Per executed step t of a rollout's first episode, with a_t the commanded action [A]:

    first difference   ||a_t - a_{t-1}||               (from the 2nd executed step on)
    second difference  ||a_t - 2 a_{t-1} + a_{t-2}||   (from the 3rd on; the RTC paper's jerk proxy)

Each is taken twice: over the level's **used** action dimensions (a 0/1 mask [A] from
`rtcbench.levels.used_action_dims`: Kinetix always emits every motor and thruster slot, and the unused
ones drive nothing, while a stochastic policy puts as much noise there as anywhere), and over **all**
dimensions (the reference's definition, kept for comparison). Per rollout:

    jerk_max_d1,  jerk_max_d2      max over the episode, used dims     (grows with episode length)
    jerk_mean_d1, jerk_mean_d2     mean per step, used dims            (length-independent)
    jerk_all_*                     the same over all dims

`stream_metrics` runs the same accumulation over one hand-given stream (the golden test uses it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NAMES = ("d1_max", "d1_sum", "d2_max", "d2_sum", "all_d1_max", "all_d1_sum", "all_d2_max", "all_d2_sum")


def init(B: int) -> dict:
    """Accumulators, [B] float32 each."""
    return {k: jnp.zeros((B,), jnp.float32) for k in NAMES}


def accumulate(acc: dict, a, last, prev, ok1, ok2, used_mask) -> dict:
    """Add one executed step. a, last (a_{t-1}), prev (a_{t-2}): [B, A]; ok1, ok2: [B] bool, the step has
    one / two executed predecessors in the first episode; used_mask: [A] float (1 = the dim drives something)."""
    diff1 = a - last  # [B, A]
    diff2 = a - 2.0 * last + prev  # [B, A]
    terms = {
        "d1": jnp.linalg.norm(diff1 * used_mask, axis=-1), "d2": jnp.linalg.norm(diff2 * used_mask, axis=-1),
        "all_d1": jnp.linalg.norm(diff1, axis=-1), "all_d2": jnp.linalg.norm(diff2, axis=-1),
    }  # [B] each
    out = {}
    for name, value in terms.items():
        ok = ok1 if name.endswith("d1") else ok2
        v = jnp.where(ok, value, 0.0)
        out[f"{name}_max"] = jnp.maximum(acc[f"{name}_max"], v)
        out[f"{name}_sum"] = acc[f"{name}_sum"] + v
    return out


def summarize(acc: dict, length) -> dict:
    """Accumulators and first-episode lengths [B] -> the eight per-rollout smoothness metrics [B]."""
    res = {}
    for prefix, key in (("jerk", ""), ("jerk_all", "all_")):
        res[f"{prefix}_max_d1"] = acc[f"{key}d1_max"]
        res[f"{prefix}_mean_d1"] = acc[f"{key}d1_sum"] / jnp.maximum(length - 1, 1)
        res[f"{prefix}_max_d2"] = acc[f"{key}d2_max"]
        res[f"{prefix}_mean_d2"] = acc[f"{key}d2_sum"] / jnp.maximum(length - 2, 1)
    return res


def used_mask(action_dim: int, used_dims: list[int]) -> jax.Array:
    """[A] float32: 1 on the used dimensions, 0 elsewhere."""
    return jnp.zeros((action_dim,), jnp.float32).at[jnp.asarray(used_dims, jnp.int32)].set(1.0)


def stream_metrics(actions, mask) -> dict:
    """The eight metrics of one whole stream of executed actions [T, A] (every step in the first episode),
    by the engine's own accumulation. -> dict of scalars."""
    actions = jnp.asarray(actions, jnp.float32)
    A = actions.shape[1]

    def step(c, a):
        acc, last, prev, n = c
        acc = accumulate(acc, a[None], last[None], prev[None], (n >= 1)[None], (n >= 2)[None], mask)
        return (acc, a, last, n + 1), None

    zero = jnp.zeros((A,), jnp.float32)
    (acc, _, _, n), _ = jax.lax.scan(step, (init(1), zero, zero, jnp.int32(0)), actions)
    return {k: float(v[0]) for k, v in summarize(acc, n[None]).items()}
