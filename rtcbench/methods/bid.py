"""`bid` (bidirectional decoding): draw N samples, keep the one with the lowest loss.

Backward loss of sample a against the prefix, over REAL prefix positions only:

    L_B(a) = sum_{i < H - s} W_i ||a_i - prefix_i||,   W = prefix_weights(dhat, s, H, "exp")

Positions i >= H - s are padding (see `weights.shift_prefix`); they are masked with `where`, so even
NaN or inf written there cannot change the choice. Optional forward contrast with a weak policy:
positives = the K strong samples, negatives = the K weak samples with the lowest backward loss, and

    L_F(a) = mean_{p in pos} sum_i ||a_i - p_i||  -  mean_{q in neg} sum_i ||a_i - q_i||

The chosen sample minimises L_B + L_F.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rtcbench.methods.naive import Cost, euler_sample, flow_noise
from rtcbench.methods.weights import prefix_weights, real_positions


def _samples(policy, obs, key, N: int, H: int, A: int, n: int):
    """N samples per rollout: obs [B, O], key [B, 2] -> [B, N, H, A]."""
    B = obs.shape[0]
    keys = jax.vmap(lambda k: jax.random.split(k, N))(key).reshape(B * N, -1)  # [B*N, 2]
    obs_n = jnp.repeat(obs, N, axis=0)  # [B*N, O]
    return euler_sample(policy, obs_n, flow_noise(keys, H, A), n).reshape(B, N, H, A)


def backward_loss(samples, prefix, dhat, s):
    """samples [B, N, H, A], prefix [B, H, A] -> [B, N]; padding positions never contribute."""
    H = prefix.shape[1]
    W = prefix_weights(dhat, s, H, "exp")  # [B, H]
    real = real_positions(s, H)  # [B, H]
    dist = jnp.linalg.norm(samples - prefix[:, None], axis=-1)  # [B, N, H]
    return jnp.where(real[:, None, :], W[:, None, :] * dist, 0.0).sum(-1)


def bid_chunk(policy, obs, prefix, dhat, s, key, *, n: int, n_samples: int = 16, weak=None,
              n_weak: int = 32, k: int = 3):
    """obs [B, O], prefix [B, H, A], dhat [B], s [B], key [B, 2] -> (chunk [B, H, A], Cost)."""
    B, H, A = prefix.shape
    k_strong, k_weak = jax.vmap(lambda kk: jax.random.split(kk))(key).transpose(1, 0, 2)  # 2 x [B, 2]
    cand = _samples(policy, obs, k_strong, n_samples, H, A, n)  # [B, N, H, A]
    loss = backward_loss(cand, prefix, dhat, s)  # [B, N]
    nfe = n_samples * n
    if weak is not None:
        neg_all = _samples(weak, obs, k_weak, n_weak, H, A, n)  # [B, Nw, H, A]
        kp, kn = min(k, n_samples), min(k, n_weak)
        pos = jnp.take_along_axis(cand, jnp.argsort(loss, -1)[:, :kp, None, None], axis=1)  # [B, kp, H, A]
        neg_loss = backward_loss(neg_all, prefix, dhat, s)
        neg = jnp.take_along_axis(neg_all, jnp.argsort(neg_loss, -1)[:, :kn, None, None], axis=1)

        def dist(a, b):  # [B, N, H, A], [B, M, H, A] -> [B, N]
            return jnp.linalg.norm(a[:, :, None] - b[:, None], axis=-1).sum(-1).mean(-1)

        loss = loss + dist(cand, pos) - dist(cand, neg)
        nfe += n_weak * n
    best = jnp.argmin(loss, axis=-1)  # [B]
    chunk = jnp.take_along_axis(cand, best[:, None, None, None], axis=1)[:, 0]
    return chunk, Cost(nfe=nfe, vjp=0)
