"""A flow policy's modality, measured: how much chunks sampled at the same observation disagree.

RTC exists to repair the disagreement between independently sampled chunks, so a policy whose chunks
agree leaves it nothing to repair (docs/DESIGN.md §6). Five numbers, each with a 95% interval from a
bootstrap over observations (the observations are the independent units; the chunks at one
observation are not):

- ``stochasticity`` (sidecars written before issue #23 call it ``spread``; read either with
  `rtcbench.shipped.modality_value`): mean pairwise distance between the M chunks sampled at one
  observation, divided by the mean distance between chunks sampled at two different observations.
  0 = deterministic given the observation; about 1 = the observation barely matters to what is sampled.
  Distances are Euclidean over the whole chunk [H, A_used] on the action dimensions the level uses.
- ``sign_disagreement``: the share of same-observation pairs whose first actions have opposite signs
  on at least one used action dimension (exact zeros never disagree).
- ``bimodal_share``: the share of observations whose M first actions (used dims) are fitted better by two
  Gaussians than by one: BIC(1 component) - BIC(2 components) > ``BIC_MARGIN`` = 10, past "very strong"
  on the usual BIC scale (a gain of 6-10 is "strong"). ``median_bic_gain`` is the median of that gain over
  observations (> 0: two components fit better after the penalty for their extra parameters).
- ``boundary_disagreement``: under naive chunking at d = s (default 4), how far the new chunk's plan is
  from the old chunk's for the same control steps: mean |B_i - A_(s+i)| over the overlap i < H - s and
  the used dims, with B sampled s steps after A (`rtcbench.engine.consistency.aligned_states`).

Observations are the policy's own closed-loop states (fresh chunk every step, 0.1-std action noise):
``n_obs`` rollouts from the level's reset, each observed at a step drawn uniformly in [0, horizon).
They are held out: drawn from the policy's rollouts, not from its training data.

Stochasticity and sign disagreement measure noise, not modes: a wide single-peaked Gaussian has a high
stochasticity and, when it straddles zero, a high sign disagreement, but a bimodal share near 0 (the
golden test in tests/policy/test_modality.py). The mode test uses the first action alone, the action that
is executed and the one the sign disagreement reads: with M = 16 samples, adding the mean of the next few
actions would double the dimension and more than double the 2-component mixture's parameters (full
covariances), leaving too few samples per parameter for BIC to mean much. The fits (scikit-learn's
``GaussianMixture``, full covariances, fixed ``random_state``, the best of ``GMM_N_INIT`` starts for two
components) add ``GMM_REG_COVAR`` = 1e-4 to each variance (a std of 0.01 in action units): modes closer
than that do not matter to control, and M equal samples cannot make a component of zero width. BIC needs M
well above the 2-component parameter count (5 for one used dim, 11 for two); with few samples (M = 4) the
share is not meaningful. A heavy-tailed single peak can also pass the margin now and then (a narrow and a
wide component at one mean); the measure asks "more than one Gaussian?", of which two modes are the usual
reason in a policy cloned from sampled expert actions.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.levels import ACTION_NOISE_STD, used_action_dims
from rtcbench.methods.naive import euler_sample, flow_noise

N_BOOT = 1000
BIC_MARGIN = 10.0  # BIC(1) - BIC(2) past which an observation counts as bimodal ("very strong" evidence)
GMM_N_INIT = 3  # starts of the 2-component fit; the best (highest likelihood) is kept
GMM_REG_COVAR = 1e-4  # added to every variance: a floor of 0.01 action units on a component's std
GMM_SEED = 0
SUMMARY_KEYS = ("stochasticity", "sign_disagreement", "boundary_disagreement", "bimodal_share", "median_bic_gain")


def spread_and_signs(chunks: np.ndarray, dims) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """chunks [N, M, H, A] (M samples at each of N observations) ->
    (within [N]: mean pairwise distance among each observation's M chunks,
     between [N, N]: mean distance between chunk j of observation a and chunk j of observation b (a != b),
     disagree [N]: share of each observation's pairs whose first actions disagree in sign on a used dim)."""
    x = np.asarray(chunks, np.float64)[..., dims]  # [N, M, H, A_used]
    N, M = x.shape[:2]
    flat = x.reshape(N, M, -1)  # [N, M, F]
    iu = np.triu_indices(M, k=1)
    d_within = np.linalg.norm(flat[:, :, None] - flat[:, None, :], axis=-1)[:, iu[0], iu[1]]  # [N, pairs]
    within = d_within.mean(axis=1)
    between = np.zeros((N, N))
    for j in range(M):  # chunk j at each observation against chunk j at every other
        fj = flat[:, j]  # [N, F]
        between += np.linalg.norm(fj[:, None] - fj[None, :], axis=-1)
    between /= M
    first = np.sign(x[:, :, 0])  # [N, M, A_used]
    opposite = (first[:, iu[0]] * first[:, iu[1]]) < 0  # [N, pairs, A_used]
    disagree = opposite.any(axis=-1).mean(axis=1)
    return within, between, disagree


def bic_gains(chunks: np.ndarray, dims) -> np.ndarray:
    """chunks [N, M, H, A] -> [N]: BIC of one Gaussian minus BIC of a 2-component Gaussian mixture, fitted to
    each observation's M first actions on the used dims (> 0: two components fit better)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    first = np.asarray(chunks, np.float64)[:, :, 0][..., dims]  # [N, M, A_used]
    gains = np.empty(first.shape[0])
    # Tiny fits: BLAS threads only cost here (10x slower on a loaded 2-core machine). Equal samples (a
    # near-deterministic policy) make the k-means start warn that it found one distinct cluster: expected.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Number of distinct clusters", category=ConvergenceWarning)
        for i, x in enumerate(first):
            bic = [GaussianMixture(k, covariance_type="full", reg_covar=GMM_REG_COVAR, n_init=1 if k == 1 else GMM_N_INIT,
                                   random_state=GMM_SEED).fit(x).bic(x) for k in (1, 2)]
            gains[i] = bic[0] - bic[1]
    return gains


def _ratio_of_means(within: np.ndarray, between: np.ndarray, idx: np.ndarray) -> float:
    sub = between[np.ix_(idx, idx)]
    off = idx[:, None] != idx[None, :]  # pairs of two distinct observations
    return float(within[idx].mean() / sub[off].mean()) if off.any() else float("nan")


def modality_summary(chunks: np.ndarray, dims, boundary: np.ndarray, seed: int = 0) -> dict:
    """chunks [N, M, H, A], boundary [N] -> the five numbers with bootstrap 95% intervals over observations."""
    within, between, disagree = spread_and_signs(chunks, dims)
    gains = bic_gains(chunks, dims)
    bimodal = (gains > BIC_MARGIN).astype(np.float64)
    N = within.shape[0]
    rng = np.random.default_rng(seed)
    boots = {k: [] for k in SUMMARY_KEYS}
    for _ in range(N_BOOT):
        idx = rng.integers(0, N, N)
        boots["stochasticity"].append(_ratio_of_means(within, between, idx))
        boots["sign_disagreement"].append(float(disagree[idx].mean()))
        boots["boundary_disagreement"].append(float(boundary[idx].mean()))
        boots["bimodal_share"].append(float(bimodal[idx].mean()))
        boots["median_bic_gain"].append(float(np.median(gains[idx])))
    point = {"stochasticity": _ratio_of_means(within, between, np.arange(N)),
             "sign_disagreement": float(disagree.mean()), "boundary_disagreement": float(boundary.mean()),
             "bimodal_share": float(bimodal.mean()), "median_bic_gain": float(np.median(gains))}
    out = {}
    for k, v in point.items():
        lo, hi = np.nanpercentile(boots[k], [2.5, 97.5])  # a resample of one observation has no spread
        out[k] = {"value": v, "ci95": [float(lo), float(hi)]}
    out["within_distance"] = float(within.mean())
    out["between_distance"] = float(between[~np.eye(N, dtype=bool)].mean())
    out["bimodal_bic_margin"] = BIC_MARGIN
    return out


def held_out_observations(level, policy, *, n_obs: int, horizon: int, n: int, seed: int) -> jax.Array:
    """-> obs [n_obs, O]: rollout b of the policy's closed loop (d = 0, s = 1) observed at a uniform step."""
    H, A = policy.cfg.H, level.action_dim
    key = jax.random.PRNGKey(seed)
    obs, state = jax.vmap(level.reset)(jax.random.split(jax.random.fold_in(key, 0), n_obs))
    pick = jax.random.randint(jax.random.fold_in(key, 1), (n_obs,), 0, horizon)  # [N]

    def step(carry, j):
        obs, state, kept = carry
        kept = jnp.where((pick == j)[:, None], obs, kept)
        k_flow, k_noise, k_env = jax.random.split(jax.random.fold_in(key, j + 2), 3)
        chunk = euler_sample(policy, obs, flow_noise(jax.random.split(k_flow, n_obs), H, A), n)
        action = chunk[:, 0] + ACTION_NOISE_STD * jax.random.normal(k_noise, (n_obs, A))
        obs, state, *_ = jax.vmap(level.step)(jax.random.split(k_env, n_obs), state, action)
        return (obs, state, kept), None

    (_, _, kept), _ = jax.lax.scan(step, (obs, state, obs), jnp.arange(horizon))
    return kept


def measure_modality(level, policy, *, n_obs: int = 128, m: int = 16, horizon: int = 64, boundary_s: int = 4,
                     n: int = 5, seed: int = 0) -> dict:
    """Sample m chunks at each of n_obs held-out observations and summarise (module docstring)."""
    from rtcbench.engine.consistency import aligned_overlap_distance, aligned_states

    H, A = policy.cfg.H, level.action_dim
    if not (1 <= boundary_s < H):
        raise ValueError(f"boundary_s must be in [1, H), got {boundary_s}")
    dims = used_action_dims(level)

    @jax.jit
    def sample_all():
        obs = held_out_observations(level, policy, n_obs=n_obs, horizon=horizon, n=n, seed=seed)  # [N, O]
        rep = jnp.repeat(obs, m, axis=0)  # [N*M, O]
        keys = jax.random.split(jax.random.PRNGKey(seed + 1), n_obs * m)
        chunks = euler_sample(policy, rep, flow_noise(keys, H, A), n)  # [N*M, H, A]
        obs_b, old = aligned_states(level, policy, B=n_obs, warmup=horizon // 2, s=boundary_s, n=n, seed=seed + 2)
        new = euler_sample(policy, obs_b, flow_noise(jax.random.split(jax.random.PRNGKey(seed + 3), n_obs), H, A), n)
        boundary = aligned_overlap_distance(old, new, boundary_s, dims).mean(axis=1)  # [N]
        return chunks.reshape(n_obs, m, H, A), boundary

    chunks, boundary = jax.device_get(sample_all())
    out = modality_summary(np.asarray(chunks), dims, np.asarray(boundary), seed=seed)
    out.update(n_obs=n_obs, m=m, horizon=horizon, boundary_d=boundary_s, boundary_s=boundary_s, flow_steps=n,
               seed=seed, action_dims=[int(i) for i in dims])
    return out
