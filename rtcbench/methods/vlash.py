"""`vlash` (arXiv 2512.01031): condition the policy on the committed action(s) at the step its chunk starts.

VLASH rolls the state forward over the inference delay with the actions already committed to run in the
meantime, and conditions the policy on that estimate of the execution-time state. Kinetix gives no
separable robot state to roll forward, so the conditioning is the committed actions themselves, at the
step the new chunk is forecast to start executing, ``tau_k + dhat``:

    committed c_i, i < dhat    the actions that run at steps tau_k + i before the new chunk takes over:
                               prefix_i on real positions (i < H - s); beyond them the old chunk has run
                               out and the `hold` fallback repeats its last real action (zero if none)
    cond = [c_{dhat-1},  c_{dhat-1} - c_{dhat-2},  dhat / H]                          [B, 2A + 1]
           last committed   its first difference    the offset
           (0 if dhat < 1)  (0 if dhat < 2)

The policy's chunk C is for steps tau_k + dhat, tau_k + dhat + 1, ... So the method's chunk, indexed from
tau_k as every chunk is (docs/DESIGN.md §1), is the committed actions, then C:

    A_new_i = c_i             for i < dhat
    A_new_i = C_{i - dhat}    for i >= dhat

A forecast miss (d_k > dhat) starts executing at C_{d_k - dhat}, a chunk made for an earlier start from a
wrong committed action; over-forecasting (d_k < dhat) executes committed actions, which the old chunk
would have run too. So a wrong forecast costs VLASH as it costs RTC.

Training (`rtcbench.policy.vlash`) uses the same function on the expert's own actions: with an offset
delta ~ U{0..d_max}, the "prefix" is the data chunk at step i (all H positions real, s = 0), the
conditioning is ``conditioning(chunk_i, delta, 0)`` and the target the expert's chunk at step i + delta.
With no conditioning (``cond=None``, e.g. the synchronous first chunk) a vlash policy sees zeros, which
is the delta = 0 conditioning: no committed action, offset 0.
"""

from __future__ import annotations

import jax.numpy as jnp

from rtcbench.methods.naive import Cost, flow_noise


def cond_dim(action_dim: int) -> int:
    """Width of the conditioning vector: last committed action, its first difference, the offset."""
    return 2 * action_dim + 1


def committed_actions(prefix, dhat, s):
    """prefix [B, H, A], dhat [B], s [B] -> [B, H, A]: c_i for i < dhat (held past the real prefix), else 0."""
    B, H, A = prefix.shape
    real = H - jnp.asarray(s)  # [B]: real prefix positions
    i = jnp.arange(H)[None, :]  # [1, H]
    src = jnp.clip(jnp.minimum(i, real[:, None] - 1), 0, H - 1)  # [B, H]
    held = jnp.take_along_axis(prefix, src[..., None], axis=1)  # [B, H, A]
    held = jnp.where((real > 0)[:, None, None], held, 0.0)
    return jnp.where((i < jnp.asarray(dhat)[:, None])[..., None], held, 0.0)


def conditioning(prefix, dhat, s):
    """prefix [B, H, A], dhat [B], s [B] -> cond [B, 2A + 1] (see the module docstring)."""
    B, H, A = prefix.shape
    dhat = jnp.asarray(dhat)
    c = committed_actions(prefix, dhat, s)  # [B, H, A]

    def at(k):  # c_k for k >= 0, else 0: [B, A]
        got = jnp.take_along_axis(c, jnp.clip(k, 0, H - 1)[:, None, None], axis=1)[:, 0]
        return jnp.where((k >= 0)[:, None], got, 0.0)

    last = at(dhat - 1)
    diff = jnp.where((dhat >= 2)[:, None], last - at(dhat - 2), 0.0)
    offset = (dhat.astype(jnp.float32) / H)[:, None]
    return jnp.concatenate([last, diff, offset], axis=-1).astype(jnp.float32)


def vlash_chunk(policy, obs, prefix, dhat, s, key, *, n: int):
    """obs [B, O], prefix [B, H, A], dhat [B], s [B], key [B, 2] -> (chunk [B, H, A], Cost)."""
    B, H, A = prefix.shape
    cond = conditioning(prefix, dhat, s)  # [B, 2A + 1]
    x = flow_noise(key, H, A)
    for i in range(n):
        x = x + policy.velocity(obs, x, jnp.full((B,), i / n), cond=cond) / n
    i = jnp.arange(H)[None, :]
    shifted = jnp.take_along_axis(x, jnp.clip(i - dhat[:, None], 0, H - 1)[..., None], axis=1)  # C_{i - dhat}
    chunk = jnp.where((i < dhat[:, None])[..., None], committed_actions(prefix, dhat, s), shifted)
    return chunk, Cost(nfe=n, vjp=0)
