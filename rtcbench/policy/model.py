"""The flow chunk policy: an MLP-Mixer over the H action tokens with adaLN time conditioning.

Interface used by every method (docs/DESIGN.md §3):

    policy.velocity(obs, x, tau, cond=None) -> v
        obs: [B, obs_dim]     x: [B, H, action_dim]     tau: [B] or [B, H]     v: [B, H, action_dim]
        cond: [B, cond_dim], only for a policy with ``cond_dim > 0`` (VLASH, rtcbench.methods.vlash);
              None there means zeros (the offset-0 conditioning); a policy with cond_dim = 0 has no such input

tau is the flow time: x_tau = (1 - tau) * noise + tau * actions, so tau = 0 is pure noise and tau = 1 is
clean. A per-token tau ([B, H]) is what training-time RTC feeds: clean prefix tokens carry tau = 1.

    policy.sample(key, obs, n) -> actions [B, H, action_dim]      (n Euler steps from tau = 0 to 1)

Architecture, per token i (H tokens):

    token_i = Linear([x_i, norm(obs)(, cond)]) + pos_i             # [B, H, C]
    cond_i  = MLP(sinusoid(tau_i))                                  # [B, H, C]
    repeat `layers` times:
        token-mixing MLP across the H tokens, adaLN-modulated by cond (shift, scale, gate)
        channel-mixing MLP per token,          adaLN-modulated by cond
    v_i = Linear(adaLN(token_i))                                    # [B, H, action_dim]

The modulation layers are zero-initialised, so every block starts as the identity (as in DiT).
Observations are standardised by a mean/std stored in the module (fitted on the BC data set).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import flax.nnx as nnx
import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class PolicyConfig:
    """Shape-bearing hyper-parameters of the flow policy (all static)."""

    obs_dim: int
    action_dim: int
    H: int = 8
    layers: int = 2
    channels: int = 64
    channel_hidden: int = 128
    token_hidden: int = 32
    cond_dim: int = 0  # width of an extra conditioning input (VLASH); 0 = none (bc, ttrtc)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.cond_dim:  # sidecars of unconditioned policies keep the keys they always had
            del d["cond_dim"]
        return d


# Size presets. `cpu` is for s/m levels on a 2-core machine; `paper` is the paper's model (GPU, L levels).
PRESETS: dict[str, dict[str, int]] = {
    "cpu": dict(layers=2, channels=64, channel_hidden=128, token_hidden=32),
    "paper": dict(layers=4, channels=256, channel_hidden=512, token_hidden=64),
}


def make_config(preset: str, obs_dim: int, action_dim: int, H: int = 8) -> PolicyConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; allowed: {sorted(PRESETS)}")
    return PolicyConfig(obs_dim=obs_dim, action_dim=action_dim, H=H, **PRESETS[preset])


class ObsStats(nnx.Variable):
    """Non-trainable observation statistics (excluded from the optimiser by type)."""


def _sinusoid(tau: jax.Array, dim: int) -> jax.Array:
    """[...] -> [..., dim] sinusoidal embedding of tau in [0, 1]."""
    half = dim // 2
    freqs = jnp.exp(-math.log(1000.0) * jnp.arange(half) / max(half - 1, 1))
    angles = tau[..., None] * 1000.0 * freqs  # [..., half]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class _AdaLN(nnx.Module):
    """LayerNorm without affine, modulated by a per-token condition: (shift, scale, gate)."""

    def __init__(self, channels: int, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(channels, use_scale=False, use_bias=False, rngs=rngs)
        self.mod = nnx.Linear(
            channels, 3 * channels, kernel_init=nnx.initializers.zeros, bias_init=nnx.initializers.zeros, rngs=rngs
        )

    def __call__(self, h: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        shift, scale, gate = jnp.split(self.mod(nnx.silu(cond)), 3, axis=-1)  # each [B, H, C]
        return self.norm(h) * (1.0 + scale) + shift, gate


class _MixerBlock(nnx.Module):
    def __init__(self, cfg: PolicyConfig, rngs: nnx.Rngs):
        C = cfg.channels
        self.token_ln = _AdaLN(C, rngs)
        self.token_fc1 = nnx.Linear(cfg.H, cfg.token_hidden, rngs=rngs)
        self.token_fc2 = nnx.Linear(cfg.token_hidden, cfg.H, rngs=rngs)
        self.channel_ln = _AdaLN(C, rngs)
        self.channel_fc1 = nnx.Linear(C, cfg.channel_hidden, rngs=rngs)
        self.channel_fc2 = nnx.Linear(cfg.channel_hidden, C, rngs=rngs)

    def __call__(self, h: jax.Array, cond: jax.Array) -> jax.Array:
        # token mixing: mix across the H positions, per channel
        y, gate = self.token_ln(h, cond)  # [B, H, C]
        y = jnp.swapaxes(y, -1, -2)  # [B, C, H]
        y = self.token_fc2(nnx.gelu(self.token_fc1(y)))
        h = h + gate * jnp.swapaxes(y, -1, -2)
        # channel mixing: per position
        y, gate = self.channel_ln(h, cond)
        h = h + gate * self.channel_fc2(nnx.gelu(self.channel_fc1(y)))
        return h


class FlowPolicy(nnx.Module):
    """Flow-matching action-chunk policy. See the module docstring for shapes."""

    def __init__(self, cfg: PolicyConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        C = cfg.channels
        self.obs_mean = ObsStats(jnp.zeros(cfg.obs_dim))
        self.obs_std = ObsStats(jnp.ones(cfg.obs_dim))
        self.embed = nnx.Linear(cfg.action_dim + cfg.obs_dim + cfg.cond_dim, C, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.H, C)))
        self.time_fc1 = nnx.Linear(C, C, rngs=rngs)
        self.time_fc2 = nnx.Linear(C, C, rngs=rngs)
        self.blocks = nnx.List([_MixerBlock(cfg, rngs) for _ in range(cfg.layers)])
        self.out_ln = _AdaLN(C, rngs)
        self.out = nnx.Linear(C, cfg.action_dim, rngs=rngs)

    def set_obs_stats(self, mean: jax.Array, std: jax.Array) -> None:
        self.obs_mean.value = jnp.asarray(mean, jnp.float32)
        self.obs_std.value = jnp.maximum(jnp.asarray(std, jnp.float32), 1e-3)

    def normalize_obs(self, obs: jax.Array) -> jax.Array:
        """obs [..., obs_dim] standardised with the stored statistics."""
        return (obs - self.obs_mean.value) / self.obs_std.value

    def velocity(self, obs: jax.Array, x: jax.Array, tau: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        """obs [B, obs_dim], x [B, H, A], tau [B] or [B, H], cond [B, cond_dim] or None -> velocity [B, H, A]."""
        H = self.cfg.H
        obs_n = (obs - self.obs_mean.value) / self.obs_std.value  # [B, obs_dim]
        if self.cfg.cond_dim:
            cond = jnp.zeros((obs.shape[0], self.cfg.cond_dim), obs_n.dtype) if cond is None else cond
            obs_n = jnp.concatenate([obs_n, jnp.asarray(cond, obs_n.dtype)], axis=-1)  # [B, obs_dim + cond_dim]
        elif cond is not None:
            raise ValueError("this policy takes no conditioning input (cond_dim = 0)")
        obs_tok = jnp.broadcast_to(obs_n[:, None, :], (*x.shape[:-1], obs_n.shape[-1]))  # [B, H, obs_dim]
        h = self.embed(jnp.concatenate([x, obs_tok], axis=-1)) + self.pos.value  # [B, H, C]
        tau = jnp.asarray(tau, jnp.float32)
        tau_tok = jnp.broadcast_to(tau[:, None] if tau.ndim == 1 else tau, (x.shape[0], H))  # [B, H]
        cond = self.time_fc2(nnx.silu(self.time_fc1(_sinusoid(tau_tok, self.cfg.channels))))  # [B, H, C]
        for block in self.blocks:
            h = block(h, cond)
        y, _ = self.out_ln(h, cond)
        return self.out(y)

    def sample(self, key: jax.Array, obs: jax.Array, n: int) -> jax.Array:
        """Plain Euler sampling with n steps: obs [B, obs_dim] -> actions [B, H, A]."""
        x = jax.random.normal(key, (obs.shape[0], self.cfg.H, self.cfg.action_dim))
        dt = 1.0 / n
        for i in range(n):
            tau = jnp.full((obs.shape[0],), i * dt)
            x = x + dt * self.velocity(obs, x, tau)
        return x


def make_policy(cfg: PolicyConfig, seed: int = 0) -> FlowPolicy:
    return FlowPolicy(cfg, nnx.Rngs(seed))
