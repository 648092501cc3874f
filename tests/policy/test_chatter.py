"""Golden values of the action-chatter statistic (rtcbench.policy.evaluate.action_chatter)."""

import numpy as np
import pytest

from rtcbench.policy.evaluate import action_chatter


def test_period_two_oscillation_reverses_every_step():
    T = 10
    wheel = np.where(np.arange(T) % 2 == 0, 0.5, -0.5)  # period-2 chatter, amplitude 1
    ramp = np.linspace(-1.0, 1.0, T)  # monotone: never reverses
    actions = np.stack([wheel, ramp], axis=-1)[:, None, :]  # [T, 1, 2]
    out = action_chatter(actions, np.array([T]))
    assert out["action_reversal_rate"] == pytest.approx([1.0, 0.0])
    assert out["action_delta_abs_mean"] == pytest.approx([1.0, 2.0 / (T - 1)])


def test_only_the_first_episode_counts():
    T = 12
    actions = np.zeros((T, 2, 1))
    actions[:, 0, 0] = np.where(np.arange(T) % 2 == 0, 1.0, -1.0)  # rollout 0 chatters all along
    actions[6:, 1, 0] = np.where(np.arange(6) % 2 == 0, 1.0, -1.0)  # rollout 1 only after its episode ended
    out = action_chatter(actions, np.array([T, 5]))
    # rollout 0 gives T-1 deltas of 2 and T-2 reversals; rollout 1 gives 4 zero deltas and 3 non-reversals
    assert out["action_delta_abs_mean"] == pytest.approx([2.0 * (T - 1) / (T - 1 + 4)])
    assert out["action_reversal_rate"] == pytest.approx([(T - 2) / (T - 2 + 3)])


def test_independent_noise_reverses_about_two_thirds_of_the_time():
    rng = np.random.default_rng(0)
    out = action_chatter(rng.normal(size=(4000, 4, 1)), np.full(4, 4000))
    assert out["action_reversal_rate"][0] == pytest.approx(2.0 / 3.0, abs=0.01)
