"""Forecasters: dhat_k, the number of prefix actions to freeze, from the delays observed before inference k.

With one inference thread every earlier inference has landed when inference k starts, so the
observations are exactly d_1 .. d_{k-1}. Column i of the arrays here is inference k = i + 1:

    column i       0      1      2      ...
    inference k    1      2      3
    observed       -      d_1    d_1,d_2

    oracle                 dhat_k = d_k (an upper bound; not deployable)
    fixed(d)               dhat_k = d
    window_max(b, init)    dhat_k = max(Q), Q = last b of [init, d_1, ..., d_{k-1}]   (paper, Algorithm 1)
    window_quantile(q, b, init)  the empirical q-quantile (inverted CDF) of the same buffer Q
    ewma(alpha, margin, init)    e_1 = init, e_{k+1} = alpha d_k + (1 - alpha) e_k; dhat_k = ceil(e_k + margin)

Forecasts are in steps, >= 0, and not clipped to H (see `rtcbench.replay.schedule`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from rtcbench.replay.base import StrictModel


class OracleForecaster(StrictModel):
    kind: Literal["oracle"] = "oracle"


class FixedForecaster(StrictModel):
    kind: Literal["fixed"] = "fixed"
    d: int = Field(ge=0, description="forecast in steps")


class WindowMaxForecaster(StrictModel):
    kind: Literal["window_max"] = "window_max"
    b: int = Field(default=10, ge=1, le=4096, description="buffer length (last b delays)")
    init: int = Field(ge=0, description="initial buffer entry in steps, used until b delays were observed")


class WindowQuantileForecaster(StrictModel):
    kind: Literal["window_quantile"] = "window_quantile"
    q: float = Field(gt=0, le=1, description="quantile, e.g. 0.95")
    b: int = Field(default=10, ge=1, le=4096)
    init: int = Field(ge=0, description="initial buffer entry in steps")


class EwmaForecaster(StrictModel):
    kind: Literal["ewma"] = "ewma"
    alpha: float = Field(gt=0, le=1, description="weight of the newest delay")
    margin: float = Field(default=0.0, ge=0, description="safety margin in steps added before rounding up")
    init: float = Field(ge=0, description="initial estimate in steps")


Forecaster = Annotated[
    OracleForecaster | FixedForecaster | WindowMaxForecaster | WindowQuantileForecaster | EwmaForecaster,
    Field(discriminator="kind"),
]


def _buffer_windows(d: np.ndarray, b: int, init: int, pad: int) -> np.ndarray:
    """Windows of the observation sequence [init, d_1, ..., d_{K-1}]: [B, K, b], left-padded with ``pad``.

    Window i ends at observation i (init is observation 0), so it holds what is known before inference
    k = i + 1.
    """
    B, K = d.shape
    seq = np.concatenate([np.full((B, 1), init, np.int64), d[:, : K - 1]], axis=1)  # [B, K]
    padded = np.concatenate([np.full((B, b - 1), pad, np.int64), seq], axis=1)  # [B, K + b - 1]
    return sliding_window_view(padded, b, axis=1)  # [B, K, b]


def forecast(forecaster, d: np.ndarray) -> np.ndarray:
    """dhat for inferences k = 1..K from the true delays d: [B, K] int -> [B, K] int64."""
    d = np.asarray(d, np.int64)
    B, K = d.shape
    if K == 0:
        return d.copy()
    if isinstance(forecaster, OracleForecaster):
        return d.copy()
    if isinstance(forecaster, FixedForecaster):
        return np.full((B, K), forecaster.d, np.int64)
    if isinstance(forecaster, WindowMaxForecaster):
        # Padding with init is harmless: every window that reaches the padding also contains init.
        return _buffer_windows(d, forecaster.b, forecaster.init, forecaster.init).max(axis=2)
    if isinstance(forecaster, WindowQuantileForecaster):
        b = forecaster.b
        big = np.iinfo(np.int64).max
        windows = np.sort(_buffer_windows(d, b, forecaster.init, big), axis=2)  # [B, K, b], padding last
        count = np.minimum(np.arange(K) + 1, b)  # [K] observations in the buffer
        rank = np.maximum(np.ceil(forecaster.q * count - 1e-12).astype(np.int64) - 1, 0)  # [K] inverted CDF
        return np.take_along_axis(windows, np.broadcast_to(rank[None, :, None], (B, K, 1)), axis=2)[..., 0]
    if isinstance(forecaster, EwmaForecaster):
        estimate = np.empty((B, K), np.float64)  # e_k before observing d_k
        e = np.full(B, float(forecaster.init))
        a = forecaster.alpha
        for i in range(K):
            estimate[:, i] = e
            e = a * d[:, i] + (1.0 - a) * e
        return np.maximum(np.ceil(estimate + forecaster.margin - 1e-9), 0).astype(np.int64)
    raise TypeError(f"unknown forecaster {forecaster!r}")

