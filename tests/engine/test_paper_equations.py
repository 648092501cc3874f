"""The methods against the paper's equations, written here from Black et al. (2025) and not from
`rtcbench.methods` (nothing of it is imported): a second, independent statement of the math.

For fixed flow noise and a fixed prefix, at (d, s) pairs that include d = 0, d = H - s and d > H - s
(one pair per rollout of the batch, so the batching is checked too):

- the naive sampler: n Euler steps of dx/dtau = v(o, x, tau) from tau = 0 (noise) to 1;
- soft (exp, linear), hard and all-ones RTC: guided inpainting with the pseudo-inverse correction
      x1hat = x + (1 - tau) v,   g = (W * (Y - x1hat))^T d x1hat / d x,
      x <- x + (v + min(beta, (1 - tau) / (tau r2)) g) / n,   r2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2),
  with the prefix weights of the paper's eq. 5: W_i = 1 for i < d, c_i (e^c_i - 1) / (e - 1) with
  c_i = (H - s - i) / (H - s - d + 1) for d <= i < H - s ("exp"; c_i itself for "linear", 0 for "hard",
  1 for "ones"), and 0 for i >= H - s;
- BID's backward loss sum_{i < H - s} W_i ||a_i - Y_i|| (exp weights) and its choice of the sample
  with the lowest loss;

must agree with the library to 1e-5. Flow noise follows the engine's documented key contract: rollout
b's noise is normal(key_b, (H, action_dim)).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

H, N_FLOW, BETA = 8, 5, 5.0
# (d, s) per rollout: d = 0, ordinary, d = H - s, d > H - s, s = H (no real prefix), large d
PAIRS = [(0, 1), (0, 4), (2, 3), (1, 1), (4, 4), (5, 4), (3, 5), (7, 2), (2, 8)]


def paper_weights(d: int, s: int, schedule: str) -> np.ndarray:
    w = np.zeros(H)
    for i in range(H - s):
        if i < d:
            w[i] = 1.0
            continue
        c = (H - s - i) / (H - s - d + 1)
        w[i] = {"exp": c * (math.exp(c) - 1) / (math.e - 1), "linear": c, "hard": 0.0, "ones": 1.0}[schedule]
    return w


def paper_guidance(tau: float) -> float:
    if tau == 0.0:
        return BETA
    r2 = (1 - tau) ** 2 / (tau**2 + (1 - tau) ** 2)
    return min(BETA, (1 - tau) / (tau * r2))


def noise(keys, A):
    return jnp.stack([jax.random.normal(k, (H, A)) for k in keys])


def paper_euler(policy, obs, x):
    for i in range(N_FLOW):
        tau = i / N_FLOW
        x = x + policy.velocity(obs, x, jnp.full((obs.shape[0],), tau)) / N_FLOW
    return x


def paper_rtc(policy, obs, x, Y, W):
    """x, Y: [B, H, A]; W: [B, H]. One rollout at a time, as the paper writes it."""
    out = []
    for b in range(obs.shape[0]):
        xb, ob, yb, wb = x[b : b + 1], obs[b : b + 1], Y[b : b + 1], jnp.asarray(W[b])[None, :, None]
        for i in range(N_FLOW):
            tau = i / N_FLOW

            def x1hat(z, tau=tau, ob=ob):
                return z + (1 - tau) * policy.velocity(ob, z, jnp.full((1,), tau))

            v = policy.velocity(ob, xb, jnp.full((1,), tau))
            _, pullback = jax.vjp(x1hat, xb)
            (g,) = pullback(wb * (yb - x1hat(xb)))
            xb = xb + (v + paper_guidance(tau) * g) / N_FLOW
        out.append(xb[0])
    return jnp.stack(out)


@pytest.fixture(scope="module")
def inputs(level):
    B, A = len(PAIRS), level.action_dim
    rng = np.random.default_rng(5)
    obs = jnp.asarray(rng.normal(size=(B, level.obs_dim)), jnp.float32)
    d = jnp.asarray([p[0] for p in PAIRS], jnp.int32)
    s = jnp.asarray([p[1] for p in PAIRS], jnp.int32)
    # a prefix as the engine builds it: the old chunk shifted by s, zeros past its end
    old = rng.uniform(-1, 1, size=(B, H, A)).astype(np.float32)
    Y = np.zeros_like(old)
    for b, (_, sb) in enumerate(PAIRS):
        Y[b, : H - sb] = old[b, sb:]
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(3), jnp.arange(B))
    return obs, jnp.asarray(Y), d, s, keys


def test_naive_sampler_matches_the_paper(policy, inputs, level):
    from rtcbench.methods.naive import naive_chunk

    obs, Y, d, s, keys = inputs
    got, _ = naive_chunk(policy, obs, Y, d, s, keys, n=N_FLOW)
    want = paper_euler(policy, obs, noise(keys, level.action_dim))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)


@pytest.mark.parametrize("schedule", ["exp", "linear", "hard", "ones"])
def test_rtc_matches_the_paper(policy, inputs, level, schedule):
    from rtcbench.methods.rtc import rtc_chunk

    obs, Y, d, s, keys = inputs
    got, _ = rtc_chunk(policy, obs, Y, d, s, keys, n=N_FLOW, schedule=schedule, beta=BETA)
    W = np.stack([paper_weights(db, sb, schedule) for db, sb in PAIRS])
    want = paper_rtc(policy, obs, noise(keys, level.action_dim), Y, W)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)
    # the guidance did something wherever a weight is non-zero, and nothing where all are zero
    plain = paper_euler(policy, obs, noise(keys, level.action_dim))
    for b in range(len(PAIRS)):
        moved = not np.allclose(np.asarray(got[b]), np.asarray(plain[b]), atol=1e-6)
        assert moved == bool(W[b].any()), (schedule, PAIRS[b])


def test_bid_backward_loss_and_choice_match_the_paper(policy, inputs, level):
    from rtcbench.methods.bid import backward_loss, bid_chunk

    obs, Y, d, s, keys = inputs
    B, A, N = len(PAIRS), level.action_dim, 6
    samples = jnp.asarray(np.random.default_rng(9).uniform(-1, 1, size=(B, N, H, A)), jnp.float32)
    W = np.stack([paper_weights(db, sb, "exp") for db, sb in PAIRS])  # [B, H]
    want = np.einsum("bh,bnh->bn", W, np.linalg.norm(np.asarray(samples) - np.asarray(Y)[:, None], axis=-1))
    np.testing.assert_allclose(np.asarray(backward_loss(samples, Y, d, s)), want, atol=1e-5, rtol=0)
    # the whole method: N samples from the key's documented split, keep the lowest backward loss
    got, _ = bid_chunk(policy, obs, Y, d, s, keys, n=N_FLOW, n_samples=N)
    for b in range(B):
        strong = jax.random.split(keys[b])[0]
        cand = paper_euler(policy, jnp.repeat(obs[b : b + 1], N, 0), noise(jax.random.split(strong, N), A))
        loss = (W[b][None] * np.linalg.norm(np.asarray(cand) - np.asarray(Y[b])[None], axis=-1)).sum(-1)
        np.testing.assert_allclose(np.asarray(got[b]), np.asarray(cand[int(np.argmin(loss))]), atol=1e-5, rtol=0)
