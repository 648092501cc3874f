"""`rtc`: inference-time real-time chunking, guided inpainting of the frozen prefix (docs/DESIGN.md §3).

At each Euler step (tau = i / n) with v = velocity(obs, x, tau):

    A1hat = x + (1 - tau) v                               one-step clean estimate   [B, H, A]
    g     = J^T (W * (prefix - A1hat)),  J = dA1hat/dx     one VJP                  [B, H, A]
    x    += (v + min(beta, (1-tau)/(tau r2)) g) / n

W = prefix_weights(dhat, s, H, schedule), zero on the padding i >= H - s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rtcbench.methods.naive import Cost, flow_noise
from rtcbench.methods.weights import guidance_weight, prefix_weights


def rtc_chunk(policy, obs, prefix, dhat, s, key, *, n: int, schedule: str = "exp", beta: float = 5.0):
    """obs [B, O], prefix [B, H, A], dhat [B], s [B], key [B, 2] -> (chunk [B, H, A], Cost)."""
    B, H, A = prefix.shape
    W = prefix_weights(dhat, s, H, schedule)[..., None]  # [B, H, 1]
    x = flow_noise(key, H, A)  # [B, H, A]
    for i in range(n):
        tau = i / n
        taus = jnp.full((B,), tau)

        def denoise(x_, taus=taus, tau=tau):
            v_ = policy.velocity(obs, x_, taus)
            return x_ + (1.0 - tau) * v_, v_

        a1, vjp_fn, v = jax.vjp(denoise, x, has_aux=True)
        (g,) = vjp_fn(W * (prefix - a1))  # [B, H, A]
        x = x + (v + guidance_weight(tau, beta) * g) / n
    return x, Cost(nfe=n, vjp=n)
