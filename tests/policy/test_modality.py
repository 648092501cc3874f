"""The modality measures on hand-built samples (no policy): modes are not noise. A wide single Gaussian
straddling zero is stochastic and disagrees in sign, but has one mode; two well-separated Gaussians have two.
And `modality_value` reads stochasticity under its new name or the `spread` of older sidecars."""

from __future__ import annotations

import numpy as np
import pytest

from rtcbench.policy.modality import BIC_MARGIN, SUMMARY_KEYS, bic_gains, modality_summary
from rtcbench.shipped import modality_value

N, M, H, A = 64, 16, 4, 2
DIMS = [0]  # dim 1 is unused: it carries two far modes that the measures must not see


def _chunks(first: np.ndarray, seed: int) -> np.ndarray:
    """first [N, M]: the used dim's first action -> chunks [N, M, H, A] whose later actions are small noise
    and whose unused dim is bimodal (+-5)."""
    rng = np.random.default_rng(seed)
    chunks = 0.05 * rng.standard_normal((N, M, H, A))
    chunks[:, :, 0, 0] = first
    chunks[..., 1] = rng.choice([-5.0, 5.0], size=(N, M, H))
    return chunks


def _summary(first: np.ndarray, seed: int) -> dict:
    out = modality_summary(_chunks(first, seed), DIMS, np.zeros(N), seed=0)
    for key in SUMMARY_KEYS:
        lo, hi = out[key]["ci95"]
        assert lo <= out[key]["value"] <= hi, key
    return out


def test_a_wide_single_gaussian_is_stochastic_but_not_bimodal():
    rng = np.random.default_rng(0)
    out = _summary(0.5 * rng.standard_normal((N, M)), seed=1)
    assert out["bimodal_share"]["value"] <= 0.1 and out["bimodal_share"]["ci95"][1] <= 0.15
    assert out["median_bic_gain"]["value"] < 0
    # what the older measures see in it: half the pairs disagree in sign, and the observation does not matter
    assert out["sign_disagreement"]["value"] > 0.4
    assert out["stochasticity"]["value"] > 0.8
    assert out["bimodal_bic_margin"] == BIC_MARGIN


def test_two_separated_gaussians_are_bimodal():
    rng = np.random.default_rng(2)
    modes = rng.choice([-0.6, 0.6], size=(N, M))
    out = _summary(modes + 0.1 * rng.standard_normal((N, M)), seed=3)
    assert out["bimodal_share"]["value"] >= 0.9 and out["bimodal_share"]["ci95"][0] >= 0.8
    assert out["median_bic_gain"]["value"] > BIC_MARGIN


def test_a_deterministic_policy_has_one_mode():
    """M equal samples: the variance floor keeps both fits finite, and two components gain nothing."""
    first = np.repeat(np.linspace(-0.5, 0.5, N)[:, None], M, axis=1)
    gains = bic_gains(_chunks(first, seed=4), DIMS)
    assert np.isfinite(gains).all() and (gains < BIC_MARGIN).all()


@pytest.mark.parametrize("recorded", ["spread", "stochasticity"])
def test_modality_value_reads_either_name(recorded):
    measure = {"value": 0.7, "ci95": [0.6, 0.8]}
    meta = {"modality": {recorded: measure}}
    assert modality_value(meta, "stochasticity") == measure and modality_value(meta, "spread") == measure
    assert modality_value(meta, "bimodal_share") is None
    assert modality_value({}, "stochasticity") is None and modality_value({"modality": None}, "spread") is None
