"""`naive`: sample a fresh chunk from the flow policy and ignore the prefix.

Also home of the pieces every method shares: the per-rollout flow noise, plain Euler sampling, and
`Cost` (network forward passes and vector-Jacobian products per rollout per inference).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Cost(NamedTuple):
    """Per-rollout cost of one inference (static: known from the method config)."""

    nfe: int  # network forward passes
    vjp: int  # vector-Jacobian products
    head_evals: int = 0  # a2c2: correction-head evaluations per executed chunk action (per control step)


def flow_noise(keys: jax.Array, H: int, action_dim: int) -> jax.Array:
    """keys [B, 2] -> x_0 [B, H, action_dim]. One key per rollout, so rollout b's noise is independent of B."""
    return jax.vmap(lambda k: jax.random.normal(k, (H, action_dim)))(keys)


def euler_sample(policy, obs: jax.Array, x0: jax.Array, n: int) -> jax.Array:
    """n Euler steps from tau = 0 (x0, noise) to tau = 1: obs [B, O], x0 [B, H, A] -> [B, H, A]."""
    B = obs.shape[0]
    x = x0
    for i in range(n):
        x = x + policy.velocity(obs, x, jnp.full((B,), i / n)) / n
    return x


def naive_chunk(policy, obs, prefix, dhat, s, key, *, n: int):
    """obs [B, O], prefix [B, H, A] (unused), key [B, 2] -> (chunk [B, H, A], Cost)."""
    del dhat, s
    _, H, A = prefix.shape
    return euler_sample(policy, obs, flow_noise(key, H, A), n), Cost(nfe=n, vjp=0)
