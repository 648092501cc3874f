"""VLASH fine-tune (arXiv 2512.01031): a flow policy conditioned on the committed actions, with random offsets.

**Model.** A vlash policy is a `FlowPolicy` whose config has ``cond_dim = 2A + 1``: the conditioning vector
of `rtcbench.methods.vlash.conditioning` (last committed action, its first difference, the offset / H)
is concatenated to the standardised observation in every token's input. `widen_from` copies a bc (or
ttrtc) policy into that shape with zero weights on the new inputs, so before fine-tuning it is exactly the
source policy, whatever the conditioning.

**Training** (`make_vlash_loss`, driven by ``rtcbench policy train-vlash``): offset-aware fine-tuning. For
a data index i (observation o_i, the expert's chunk a*_{i..i+H-1}):

    delta ~ U{0..d_max}                                   the steps until the chunk starts executing
    cond  = conditioning(prefix = a*_{i..i+H-1}, dhat = delta, s = 0)     the expert's committed actions
    the flow-matching loss of BC with observation o_i, conditioning cond and target chunk a*_{i+delta..}

Pairs whose i + delta leaves i's episode (`rtcbench.policy.finetune.episode_reach`) are masked out. At
inference the same function reads the committed actions from the previous chunk at the forecast dhat.
"""

from __future__ import annotations

import dataclasses

import flax.nnx as nnx
import jax
import jax.numpy as jnp

from rtcbench.methods.vlash import cond_dim, conditioning


def widen_from(model):
    """A FlowPolicy -> a vlash FlowPolicy (cond_dim = 2A + 1) equal to it for every conditioning."""
    from rtcbench.policy.model import make_policy

    cfg = dataclasses.replace(model.cfg, cond_dim=cond_dim(model.cfg.action_dim))
    new = make_policy(cfg)
    src = nnx.to_pure_dict(nnx.state(model))
    dst = nnx.to_pure_dict(nnx.state(new))

    def copy(s, d):
        for k, v in d.items():
            if isinstance(v, dict):
                copy(s[k], v)
            elif k == "kernel" and v.shape != s[k].shape:  # the embedding: rows for the new inputs are zero
                d[k] = jnp.zeros_like(v).at[: s[k].shape[0]].set(s[k])
            else:
                d[k] = s[k]

    copy(src, dst)
    state = nnx.state(new)
    nnx.replace_by_pure_dict(state, dst)
    nnx.update(new, state)
    return new


def make_vlash_loss(*, dmax: int):
    """-> loss_fn(model, aux, data, idx, key) for `rtcbench.policy.finetune.train_module`.
    data: obs [M, O], chunks [M, H, A], reach [M] int."""

    def loss_fn(model, aux, data, idx, key):
        del aux
        obs, chunks, reach = data["obs"], data["chunks"], data["reach"]
        M, H, A = chunks.shape
        Bt = idx.shape[0]
        k_delta, k_tau, k_noise = jax.random.split(key, 3)
        delta = jax.random.randint(k_delta, (Bt,), 0, dmax + 1)  # [Bt]
        valid = (reach[idx] >= delta).astype(jnp.float32)
        cond = conditioning(chunks[idx], delta, jnp.zeros((Bt,), jnp.int32))  # [Bt, 2A + 1]
        target = chunks[jnp.minimum(idx + delta, M - 1)]  # [Bt, H, A]: a*_{i+delta ..}
        tau = jax.random.uniform(k_tau, (Bt,))
        noise = jax.random.normal(k_noise, target.shape)
        x = (1.0 - tau[:, None, None]) * noise + tau[:, None, None] * target
        v = model.velocity(obs[idx], x, tau, cond=cond)
        err = jnp.mean((v - (target - noise)) ** 2, axis=(-1, -2))  # [Bt]
        return jnp.sum(err * valid) / jnp.maximum(valid.sum(), 1.0)

    return loss_fn
