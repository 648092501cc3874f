"""`te` (temporal ensembling, ACT): average all arrived chunk predictions for the current step.

The chunk itself is a fresh sample (as `naive`); the ensembling happens at execution. The engine keeps
a ring of the last H arrived chunks with their start steps tau (at most H chunks can still cover a step,
because inferences start at distinct steps). At step j, chunk c predicts A_c[j - tau_c] when
0 <= j - tau_c < H; the predictions are averaged with weights exp(-m * i), i = 0 for the oldest:

    step j = 10, H = 4          tau    index j - tau   rank i   weight
      chunk started at  7        7      3               0        1
      chunk started at  8        8      2               1        e^-m
      chunk started at  9        9      1               2        e^-2m
      chunk started at  5        5      5 (expired)     -        0
"""

from __future__ import annotations

import jax.numpy as jnp

from rtcbench.methods.naive import naive_chunk


def te_chunk(policy, obs, prefix, dhat, s, key, *, n: int):
    """Same computation as `naive`: obs [B, O], key [B, 2] -> (chunk [B, H, A], Cost)."""
    return naive_chunk(policy, obs, prefix, dhat, s, key, n=n)


def ensemble(buf, buf_tau, buf_ok, step, m: float):
    """buf [B, K, H, A], buf_tau [B, K], buf_ok [B, K] bool, step: scalar -> (action [B, A], any [B] bool)."""
    H = buf.shape[2]
    idx = step - buf_tau  # [B, K]
    ok = buf_ok & (idx >= 0) & (idx < H)  # [B, K]
    pred = jnp.take_along_axis(buf, jnp.clip(idx, 0, H - 1)[:, :, None, None], axis=2)[:, :, 0]  # [B, K, A]
    older = ok[:, None, :] & (buf_tau[:, None, :] < buf_tau[:, :, None])  # [B, K(self), K(other)]
    rank = older.sum(-1)  # [B, K]: 0 for the oldest valid prediction
    w = jnp.where(ok, jnp.exp(-m * rank), 0.0)  # [B, K]
    total = w.sum(-1)  # [B]
    action = (w[..., None] * pred).sum(1) / jnp.where(total > 0, total, 1.0)[:, None]
    return action, ok.any(-1)
