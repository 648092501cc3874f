"""The flow-matching losses: BC uses every token; the TTRTC loss covers only the postfix tokens."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.policy.bc import flow_matching_loss, prefix_flow_loss
from rtcbench.policy.model import make_config, make_policy
from rtcbench.policy.ttrtc import prefix_weights


def test_prefix_weights_decrease_exponentially():
    w = np.asarray(prefix_weights(4, 1.0))
    assert w.shape == (5,) and np.isclose(w.sum(), 1.0)
    np.testing.assert_allclose(w[1:] / w[:-1], np.exp(-1.0), rtol=1e-5)


def test_prefix_loss_matches_a_direct_postfix_computation():
    model = make_policy(make_config("cpu", obs_dim=6, action_dim=2, H=8), seed=0)
    B, H, A = 16, 8, 2
    obs = jax.random.normal(jax.random.PRNGKey(0), (B, 6))
    actions = jax.random.uniform(jax.random.PRNGKey(1), (B, H, A), minval=-1, maxval=1)
    noise = jax.random.normal(jax.random.PRNGKey(2), (B, H, A))
    tau = jax.random.uniform(jax.random.PRNGKey(3), (B,))
    for d_val in (0, 3):
        d = jnp.full((B,), d_val)
        # direct: prefix tokens are the clean actions at tau=1, the rest interpolated at tau
        tau_tok = jnp.concatenate([jnp.ones((B, d_val)), jnp.broadcast_to(tau[:, None], (B, H - d_val))], axis=1)
        x = jnp.concatenate([actions[:, :d_val], (1 - tau[:, None, None]) * noise[:, d_val:]
                             + tau[:, None, None] * actions[:, d_val:]], axis=1)
        v = model.velocity(obs, x, tau_tok)
        expected = jnp.mean((v[:, d_val:] - (actions - noise)[:, d_val:]) ** 2)
        got = prefix_flow_loss(model, obs, actions, noise, tau, d)
        np.testing.assert_allclose(float(got), float(expected), rtol=1e-5)
    # the postfix-only loss is not the all-token loss
    all_tokens = jnp.mean((v - (actions - noise)) ** 2)
    assert not np.isclose(float(got), float(all_tokens), rtol=1e-3)


def test_bc_loss_is_the_prefix_loss_at_d0_and_trains_down():
    import flax.nnx as nnx
    import optax

    model = make_policy(make_config("cpu", obs_dim=6, action_dim=2, H=8), seed=0)
    obs = jax.random.normal(jax.random.PRNGKey(0), (128, 6))
    actions = jnp.tanh(obs[:, :2])[:, None, :].repeat(8, axis=1)  # a learnable obs -> chunk map
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, key):
        loss, grads = nnx.value_and_grad(lambda m: flow_matching_loss(m, obs, actions, key, 4, 1.0))(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt, jax.random.PRNGKey(i))) for i in range(150)]
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
