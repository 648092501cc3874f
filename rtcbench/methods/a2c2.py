"""`a2c2` (arXiv 2509.23224): a small correction head adds a residual to the action of every control step.

The base method (naive, rtc, bid, ttrtc or vlash) makes the chunks exactly as it does alone; nothing of
its chunk generation changes. At execution (engine step 3), when the controller takes A[t] from its
current chunk, the head corrects it from the newest observation:

    a_exec = a_base + head(features),   a_base = A[t]
    features = [norm(o_now), norm(o_chunk), a_base, onehot(t, H)]              [B, 2 O + A + H]

- ``o_now``: the observation of this control step (the newest one);
- ``o_chunk``: the observation the current chunk was computed from, i.e. at its inference start tau_k.
  It stands for "features of the base policy for the chunk": the flow policy mixes its observation into
  every token with one linear layer, so it has no observation embedding of its own beyond this input;
- ``t``: the index of a_base in its chunk. It is also the chunk's staleness: A[t] runs at tau_k + t, t
  steps after the observation it was computed from (the delay d_k plus the steps run since arrival);
- ``norm``: the base policy's own observation standardisation.

The head runs on every step that executes a chunk action; a stall step (t >= H) executes the fallback
uncorrected. Its cost is one head evaluation per such step (``Cost.head_evals``, per control step), counted
per rollout by the engine beside the NFE of the base method's inferences.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def head_features(obs_now_n, obs_chunk_n, a_base, t, H: int):
    """Normalised obs [B, O] twice, a_base [B, A], t [B] int -> [B, 2 O + A + H]."""
    pos = jax.nn.one_hot(jnp.clip(t, 0, H - 1), H, dtype=jnp.float32)  # [B, H]
    return jnp.concatenate([obs_now_n, obs_chunk_n, a_base, pos], axis=-1).astype(jnp.float32)


def feature_dim(obs_dim: int, action_dim: int, H: int) -> int:
    return 2 * obs_dim + action_dim + H


def corrected_action(policy, obs_now, a_base, t, obs_chunk):
    """The executed action a_base + residual: policy is an a2c2 policy (base + head, rtcbench.policy.a2c2)."""
    return a_base + policy.correction(obs_now, a_base, t, obs_chunk)
