"""The A2C2 correction head, the a2c2 checkpoint's model, and the head's training (arXiv 2509.23224).

**Model.** `CorrectionHead` is an MLP from the features of `rtcbench.methods.a2c2.head_features` (the newest
observation, the observation the chunk was computed from, the base action and its one-hot index in the
chunk, observations standardised with the base policy's statistics) to a residual action:

    r = W_out gelu(... gelu(W_1 f + b_1) ...) + b_out        hidden layers of `hidden` units; W_out, b_out start at 0

`A2C2Policy` bundles the frozen base flow policy (bc, ttrtc or vlash) and the head. It is what an a2c2
checkpoint (kind "a2c2") loads as: ``velocity``/``sample``/``cfg`` are the base policy's, so every chunking
method runs it as it runs the base, and ``correction(o_now, a_base, t, o_chunk)`` is the residual the
engine adds at each control step.

**Training** (`a2c2_loss`, driven by ``rtcbench policy train-a2c2``). The collected data hold per
episode, in order, each step's observation o_i and the expert's next H actions (`episode_reach` finds
the episodes). One training pair, from a data index i:

    d ~ U{0..d_max}            the inference delay of the chunk
    j ~ U{0..H-1-d}            steps executed since it arrived          so t = d + j covers 0..H-1
    base chunk  A ~ base policy at o_i (n Euler steps, fresh noise), as a naive inference started at step i
    a_base = A[t],  o_now = o_{i+t},  target = a*_{i+t} (the expert's label at step i + t) - a_base
    loss = mean over pairs with i + t inside i's episode of ||head(o_now, o_i, a_base, t) - target||^2 / A

So the head learns what the expert would do now, given a chunk computed t steps earlier. This is the
closest faithful version on the collected data: the expert's observations follow the expert's own
actions (not the corrected policy's), and the base chunk is a plain sample of the base policy (RTC, BID,
TTRTC or VLASH bases make their chunks differently in deployment; VLASH's with its offset-0 conditioning).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import flax.nnx as nnx
import jax
import jax.numpy as jnp

from rtcbench.methods.a2c2 import feature_dim, head_features
from rtcbench.methods.naive import euler_sample, flow_noise


@dataclass(frozen=True)
class HeadConfig:
    """Shape-bearing settings of the correction head (all static)."""

    obs_dim: int
    action_dim: int
    H: int
    hidden: int = 128
    layers: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


class CorrectionHead(nnx.Module):
    """features [B, 2 O + A + H] -> residual [B, A]."""

    def __init__(self, cfg: HeadConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        dims = [feature_dim(cfg.obs_dim, cfg.action_dim, cfg.H)] + [cfg.hidden] * cfg.layers
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)])
        self.out = nnx.Linear(dims[-1], cfg.action_dim, kernel_init=nnx.initializers.zeros,
                              bias_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        h = features
        for layer in self.hidden:
            h = nnx.gelu(layer(h))
        return self.out(h)


class A2C2Policy(nnx.Module):
    """A frozen base flow policy plus its correction head (the model of an a2c2 checkpoint)."""

    def __init__(self, base, head: CorrectionHead):
        self.base = base
        self.head = head
        self.cfg = base.cfg

    def velocity(self, obs, x, tau, cond=None):
        if cond is None:
            return self.base.velocity(obs, x, tau)
        return self.base.velocity(obs, x, tau, cond=cond)

    def sample(self, key, obs, n: int):
        return self.base.sample(key, obs, n)

    def normalize_obs(self, obs):
        return self.base.normalize_obs(obs)

    def correction(self, obs_now, a_base, t, obs_chunk):
        """obs_now [B, O], a_base [B, A], t [B] int, obs_chunk [B, O] -> residual [B, A]."""
        f = head_features(self.base.normalize_obs(obs_now), self.base.normalize_obs(obs_chunk), a_base, t,
                          self.head.cfg.H)
        return self.head(f)


def make_head(cfg: HeadConfig, seed: int = 0) -> CorrectionHead:
    return CorrectionHead(cfg, nnx.Rngs(seed))


def make_a2c2_policy(base_cfg, head_cfg: HeadConfig, seed: int = 0) -> A2C2Policy:
    """An a2c2 policy with fresh weights (the shape template `load_policy` restores into)."""
    from rtcbench.policy.model import make_policy

    return A2C2Policy(make_policy(base_cfg, seed), make_head(head_cfg, seed))


def staleness(key, n: int, dmax: int, H: int) -> jax.Array:
    """[n] int: t = d + j with d ~ U{0..dmax}, j ~ U{0..H-1-d} (the executed index of a chunk of delay d)."""
    k_d, k_j = jax.random.split(key)
    d = jax.random.randint(k_d, (n,), 0, dmax + 1)
    j = jnp.floor(jax.random.uniform(k_j, (n,)) * (H - d)).astype(jnp.int32)
    return d + jnp.minimum(j, H - 1 - d)


def make_a2c2_loss(base_graphdef, *, dmax: int, n: int):
    """-> loss_fn(head, base_state, data, idx, key) for `rtcbench.policy.finetune.train_module`.
    data: obs [M, O], chunks [M, H, A], reach [M] int (rtcbench.policy.finetune.episode_reach)."""

    def loss_fn(head, base_state, data, idx, key):
        base = nnx.merge(base_graphdef, base_state)
        obs, chunks, reach = data["obs"], data["chunks"], data["reach"]
        M, H, A = chunks.shape
        Bt = idx.shape[0]
        k_t, k_noise = jax.random.split(key)
        t = staleness(k_t, Bt, dmax, H)  # [Bt]
        o_chunk = obs[idx]  # [Bt, O]
        o_now = obs[jnp.minimum(idx + t, M - 1)]
        target = jnp.take_along_axis(chunks[idx], t[:, None, None], axis=1)[:, 0]  # [Bt, A]: a*_{i+t}
        valid = (reach[idx] >= t).astype(jnp.float32)  # i + t in the same episode
        base_chunk = euler_sample(base, o_chunk, flow_noise(jax.random.split(k_noise, Bt), H, A), n)
        a_base = jax.lax.stop_gradient(jnp.take_along_axis(base_chunk, t[:, None, None], axis=1)[:, 0])
        f = head_features(base.normalize_obs(o_now), base.normalize_obs(o_chunk), a_base, t, H)
        err = jnp.mean((head(f) - (target - a_base)) ** 2, axis=-1)  # [Bt]
        return jnp.sum(err * valid) / jnp.maximum(valid.sum(), 1.0)

    return loss_fn
