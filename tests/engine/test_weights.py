"""Golden values of the pieces with subtle indexing: prefix weights, guidance weight, BID padding, TE."""

from __future__ import annotations

import math

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtcbench.methods.weights import guidance_weight, prefix_weights, shift_prefix


def reference_weight(i, d, s, H, schedule):
    """docs/DESIGN.md §3, written out per position."""
    if i >= H - s:
        return 0.0
    if schedule == "ones":
        return 1.0
    if i < d:
        return 1.0
    if schedule == "hard":
        return 0.0
    c = (H - s - i) / (H - s - d + 1)
    return c if schedule == "linear" else c * (math.exp(c) - 1) / (math.e - 1)


CASES = [(0, 0, 8), (2, 3, 8), (1, 1, 8), (4, 4, 8), (3, 2, 16), (0, 5, 8), (6, 4, 8), (2, 8, 8), (5, 10, 8)]


@pytest.mark.parametrize("schedule", ["exp", "linear", "hard", "ones"])
def test_prefix_weights_golden(schedule):
    for d, s, H in CASES:
        want = np.array([reference_weight(i, d, s, H, schedule) for i in range(H)])
        got = np.asarray(prefix_weights(d, s, H, schedule))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"{schedule} d={d} s={s} H={H}")
    # batched form agrees with the scalar form
    ds, ss = np.array([c[0] for c in CASES[:6]]), np.array([c[1] for c in CASES[:6]])
    batched = np.asarray(prefix_weights(ds, ss, 8, schedule))
    for row, (d, s) in enumerate(zip(ds, ss, strict=True)):
        np.testing.assert_allclose(batched[row], [reference_weight(i, d, s, 8, schedule) for i in range(8)], atol=1e-7)


def test_prefix_weight_example_values():
    # H = 8, s = 3, d = 2: two frozen, then c = 3/4, 2/4, 1/4, then three padding zeros.
    w = np.asarray(prefix_weights(2, 3, 8, "exp"))
    c = np.array([0.75, 0.5, 0.25])
    np.testing.assert_allclose(w[:2], 1.0)
    np.testing.assert_allclose(w[2:5], c * np.expm1(c) / (np.e - 1), rtol=1e-6)
    np.testing.assert_array_equal(w[5:], 0.0)


@pytest.mark.parametrize("tau,beta", [(0.0, 5.0), (0.2, 5.0), (0.6, 5.0), (0.2, 2.0), (0.6, 10.0)])
def test_guidance_weight_golden(tau, beta):
    if tau == 0.0:
        want = beta
    else:
        r2 = (1 - tau) ** 2 / (tau**2 + (1 - tau) ** 2)
        want = min(beta, (1 - tau) / (tau * r2))
    assert guidance_weight(tau, beta) == pytest.approx(want, rel=1e-12)
    assert float(guidance_weight(jnp.float32(tau), beta)) == pytest.approx(want, rel=1e-6)


def test_guidance_weight_known_numbers():
    assert guidance_weight(0.0, 5.0) == 5.0
    assert guidance_weight(0.2, 5.0) == pytest.approx(4.25)  # (0.04 + 0.64) / 0.16
    assert guidance_weight(0.6, 5.0) == pytest.approx(0.52 / 0.24)
    assert guidance_weight(0.2, 3.0) == 3.0  # clipped at beta


def test_shift_prefix():
    A = jnp.arange(2 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 1) + 1.0
    p = np.asarray(shift_prefix(A, jnp.array([3, 9])))[..., 0]
    np.testing.assert_array_equal(p[0], [4, 5, 6, 7, 8, 0, 0, 0])
    np.testing.assert_array_equal(p[1], np.zeros(8))


def test_bid_choice_ignores_padding(level, policy):
    """Garbage (huge values, inf, NaN) written beyond H - s must not change BID's choice."""
    from rtcbench.methods.bid import bid_chunk

    B, H, A = 4, 8, level.action_dim
    graphdef, state = nnx.split(policy)

    @jax.jit
    def choose(state, obs, prefix, dhat, s, keys):
        return bid_chunk(nnx.merge(graphdef, state), obs, prefix, dhat, s, keys, n=5, n_samples=16)[0]

    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(B, level.obs_dim)), jnp.float32)
    s = jnp.array([2, 3, 5, 4])
    dhat = jnp.array([1, 2, 2, 0])
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(3), jnp.arange(B))
    clean = shift_prefix(jnp.asarray(rng.normal(size=(B, H, A)), jnp.float32), s)
    pad = ~(np.arange(H)[None, :] < (H - np.asarray(s))[:, None])  # [B, H]
    base = np.asarray(choose(state, obs, clean, dhat, s, keys))
    for garbage in (1e6, -3e4, np.inf, np.nan):
        dirty = jnp.where(jnp.asarray(pad)[..., None], garbage, clean)
        np.testing.assert_array_equal(np.asarray(choose(state, obs, dirty, dhat, s, keys)), base)
    # ...while changing a real prefix position does change the choice for some rollout
    real_changed = clean.at[:, 0].add(5.0 * jnp.sign(clean[:, 0] + 1e-3))
    assert not np.array_equal(np.asarray(choose(state, obs, real_changed, dhat, s, keys)), base)


def test_te_ensemble_weights():
    from rtcbench.methods.te import ensemble

    H, A, m = 4, 1, 0.5
    buf = np.zeros((1, H, H, A), np.float32)
    taus = np.array([[8, 5, 9, 7]])  # slot order is not age order
    for slot, tau in enumerate(taus[0]):
        buf[0, slot, :, 0] = 100 * tau + np.arange(H)  # chunk started at tau predicts 100 tau + index
    ok = np.array([[True, True, True, True]])
    a, any_ok = ensemble(jnp.asarray(buf), jnp.asarray(taus), jnp.asarray(ok), 10, m)
    # step 10: tau=7 -> index 3, tau=8 -> 2, tau=9 -> 1; tau=5 expired. Oldest (7) gets weight 1.
    preds = np.array([703.0, 802.0, 901.0])
    w = np.exp(-m * np.arange(3))
    np.testing.assert_allclose(float(a[0, 0]), (w * preds).sum() / w.sum(), rtol=1e-6)
    assert bool(any_ok[0])
