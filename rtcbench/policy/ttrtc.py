"""Training-time real-time chunking (arXiv 2512.05964; docs/DESIGN.md §3 `ttrtc`).

Training: for each sample a prefix length d in {0..max_prefix} is drawn with weights exp(-decay * d)
(exponentially decreasing). The first d tokens are clean (tau = 1, x = the true actions); the other
tokens get the sample's flow time tau. The flow-matching loss covers only the postfix tokens (i >= d).
`rtcbench.policy.bc.flow_matching_loss` implements this for every max_prefix (0 = plain BC).

Inference (`sample_with_prefix`): the first d tokens are held at the given prefix actions with tau = 1
while the remaining tokens are integrated by Euler from noise, each step seeing the clean prefix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def prefix_weights(max_prefix: int, decay: float = 1.0) -> jax.Array:
    """Sampling probabilities of d in {0..max_prefix}: proportional to exp(-decay * d). [max_prefix + 1]"""
    w = jnp.exp(-decay * jnp.arange(max_prefix + 1, dtype=jnp.float32))
    return w / w.sum()


def sample_with_prefix(model, key: jax.Array, obs: jax.Array, prefix: jax.Array, d: jax.Array, n: int) -> jax.Array:
    """Euler sampling with a clean prefix.

    obs [B, O], prefix [B, H, A] (only positions i < d[b] are used), d [B] int -> actions [B, H, A]
    whose first d[b] tokens equal the prefix.
    """
    B, H, A = prefix.shape
    frozen = (jnp.arange(H)[None, :] < d[:, None])  # [B, H]
    noise = jax.random.normal(key, (B, H, A))
    x = jnp.where(frozen[..., None], prefix, noise)  # [B, H, A]
    dt = 1.0 / n
    for i in range(n):
        tau_tok = jnp.where(frozen, 1.0, i * dt)  # [B, H]
        v = model.velocity(obs, x, tau_tok)  # [B, H, A]
        x = jnp.where(frozen[..., None], prefix, x + dt * v)
    return x
