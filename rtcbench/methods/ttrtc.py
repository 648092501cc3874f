"""`ttrtc`: training-time RTC. The first dhat prefix actions are fed as clean tokens (per-token tau = 1).

    position i:   0 .. d-1            d .. H-1            d = min(dhat, H - s): only real prefix actions
    x_i           prefix_i (fixed)    Euler from noise
    tau_i         1                   i_step / n

The policy must have been trained with per-token flow time (checkpoint kind "ttrtc").
"""

from __future__ import annotations

import jax.numpy as jnp

from rtcbench.methods.naive import Cost, flow_noise


def ttrtc_chunk(policy, obs, prefix, dhat, s, key, *, n: int):
    """obs [B, O], prefix [B, H, A], dhat [B], s [B], key [B, 2] -> (chunk [B, H, A], Cost)."""
    B, H, A = prefix.shape
    d = jnp.minimum(dhat, H - s)  # [B]
    clean = jnp.arange(H)[None, :] < d[:, None]  # [B, H]
    x = jnp.where(clean[..., None], prefix, flow_noise(key, H, A))  # [B, H, A]
    for i in range(n):
        tau_tok = jnp.where(clean, 1.0, i / n)  # [B, H]
        x = jnp.where(clean[..., None], prefix, x + policy.velocity(obs, x, tau_tok) / n)
    return x, Cost(nfe=n, vjp=0)
