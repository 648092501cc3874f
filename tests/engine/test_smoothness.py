"""Golden tests of the smoothness metrics (`rtcbench.engine.smoothness`, the engine's own accumulation):
hand-built action streams whose first and second differences are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from rtcbench.engine.smoothness import stream_metrics, used_mask

T, A, USED = 10, 6, [0]


def _stream() -> np.ndarray:
    """[T, A]: dim 0 (the used one) ramps by 0.1 a step (first difference 0.1, second difference 0);
    dim 3 (unused) alternates +1, -1 (first difference 2, second difference 4); the rest are 0."""
    a = np.zeros((T, A), np.float32)
    a[:, 0] = 0.1 * np.arange(T)
    a[:, 3] = np.where(np.arange(T) % 2 == 0, 1.0, -1.0)
    return a


def test_noise_on_an_unused_dimension_does_not_count():
    m = stream_metrics(_stream(), used_mask(A, USED))
    assert m["jerk_max_d1"] == pytest.approx(0.1, abs=1e-6) and m["jerk_mean_d1"] == pytest.approx(0.1, abs=1e-6)
    assert m["jerk_max_d2"] == pytest.approx(0.0, abs=1e-6) and m["jerk_mean_d2"] == pytest.approx(0.0, abs=1e-6)
    # over all dimensions the alternating dead output dominates: sqrt(0.1^2 + 2^2) and 4
    assert m["jerk_all_max_d1"] == pytest.approx(np.hypot(0.1, 2.0), rel=1e-6)
    assert m["jerk_all_mean_d1"] == pytest.approx(np.hypot(0.1, 2.0), rel=1e-6)
    assert m["jerk_all_max_d2"] == pytest.approx(4.0, rel=1e-6)
    assert m["jerk_all_mean_d2"] == pytest.approx(4.0, rel=1e-6)


def test_the_mean_does_not_grow_with_episode_length_where_the_max_does():
    """One spike of the used dim: its max stays, its mean per step falls as the episode grows."""
    mask = used_mask(A, USED)
    short, long = np.zeros((12, A), np.float32), np.zeros((48, A), np.float32)
    short[5, 0] = long[5, 0] = 1.0  # second differences 1, -2, 1 around step 5
    m_short, m_long = stream_metrics(short, mask), stream_metrics(long, mask)
    assert m_short["jerk_max_d2"] == m_long["jerk_max_d2"] == pytest.approx(2.0)
    assert m_short["jerk_mean_d2"] == pytest.approx(4.0 / 10) and m_long["jerk_mean_d2"] == pytest.approx(4.0 / 46)


def test_the_first_steps_have_no_predecessor():
    """The first executed action has no first difference and the first two no second difference: a jump
    from the zero 'previous action' before step 0 is never counted."""
    a = np.full((3, A), 5.0, np.float32)
    m = stream_metrics(a, used_mask(A, [0, 1]))
    assert m["jerk_max_d1"] == m["jerk_max_d2"] == m["jerk_all_max_d2"] == 0.0
