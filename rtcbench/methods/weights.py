"""Prefix weights, the RTC guidance weight, and the prefix shift (docs/DESIGN.md §1, §3).

At inference k the controller has consumed s actions of its current chunk A. The prefix is what is
left of A, shifted to the front and padded to H; positions i >= H - s are padding and carry weight 0:

    A       = [a0 a1 a2 a3 a4 a5 a6 a7]            H = 8, s = 3
    prefix  = [a3 a4 a5 a6 a7  0  0  0]            prefix_i = A[s + i] for i < H - s
    W(exp)  = [ 1  1 .49 .19 .04 0  0  0]          d = dhat = 2: frozen (1) | decaying | padding (0)
               i < d   d <= i < H-s      i >= H-s

In the decaying band c_i = (H - s - i) / (H - s - d + 1) and W_i = c_i (e^{c_i} - 1) / (e - 1) for `exp`,
W_i = c_i for `linear`; `hard` is 1 for i < d and 0 elsewhere; `ones` is 1 on every real position.
Zero beyond H - s always wins, also when d > H - s.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

SCHEDULES = ("exp", "linear", "hard", "ones")


def prefix_weights(d, s, H: int, schedule: str = "exp") -> jnp.ndarray:
    """Weights W_i over the H prefix positions. d, s: scalars or [B] ints -> [H] or [B, H] float32."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown prefix-weight schedule {schedule!r}; allowed: {SCHEDULES}")
    d = jnp.asarray(d, jnp.float32)[..., None]  # [..., 1]
    end = H - jnp.asarray(s, jnp.float32)[..., None]  # [..., 1]: number of real prefix positions
    i = jnp.arange(H, dtype=jnp.float32)  # [H]
    c = (end - i) / jnp.maximum(end - d + 1.0, 1.0)  # [..., H]
    if schedule == "exp":
        band = c * jnp.expm1(c) / (math.e - 1.0)
    elif schedule == "linear":
        band = c
    elif schedule == "hard":
        band = jnp.zeros_like(c)
    else:  # ones
        band = jnp.ones_like(c)
    w = jnp.where(i < d, 1.0, band)
    return jnp.where(i >= end, 0.0, w).astype(jnp.float32)


def guidance_weight(tau, beta: float):
    """RTC guidance weight min(beta, (1 - tau) / (tau * r2)), r2 = (1-tau)^2 / (tau^2 + (1-tau)^2).

    Equal to min(beta, (tau^2 + (1-tau)^2) / (tau (1 - tau))); at tau = 0 (and tau = 1) it is beta.
    Works on Python floats (the Euler times are static) and on arrays.
    """
    if isinstance(tau, int | float):
        if tau <= 0.0 or tau >= 1.0:
            return float(beta)
        return float(min(beta, (tau**2 + (1.0 - tau) ** 2) / (tau * (1.0 - tau))))
    tau = jnp.asarray(tau, jnp.float32)
    den = tau * (1.0 - tau)
    raw = (tau**2 + (1.0 - tau) ** 2) / jnp.where(den > 0, den, 1.0)
    return jnp.where(den > 0, jnp.minimum(beta, raw), beta)


def shift_prefix(A: jnp.ndarray, s: jnp.ndarray) -> jnp.ndarray:
    """A [B, H, act] and s [B] -> prefix [B, H, act] with prefix[b, i] = A[b, s_b + i], zero-padded."""
    H = A.shape[1]
    idx = jnp.arange(H)[None, :] + s[:, None]  # [B, H]
    taken = jnp.take_along_axis(A, jnp.clip(idx, 0, H - 1)[..., None], axis=1)  # [B, H, act]
    return jnp.where((idx < H)[..., None], taken, 0.0)


def real_positions(s: jnp.ndarray, H: int) -> jnp.ndarray:
    """[B] -> [B, H] bool: prefix position i is a real action (i < H - s), not padding."""
    return jnp.arange(H)[None, :] < (H - s)[:, None]
