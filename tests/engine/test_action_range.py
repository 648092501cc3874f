"""Out-of-range actions: kinetix clips them inside env.step, motors to [-1, 1] and thrusters to [0, 1].

`rtcbench/policy/evaluate.py` used to clip the noisy action to [-1, 1] before env.step while the engine
did not. This test measures what kinetix does, on a motor level and a thruster level: stepping with a
wildly out-of-range action gives bit-identical physics to stepping with that action clipped per type
(and to the old [-1, 1] clip), and differs from an in-range action, so the check can fail. Both paths
now pass the action unclipped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtcbench.levels import load_level


@pytest.mark.parametrize("name", ["s/h8_unicycle_balance", "m/h4_thrust_the_needle"])
def test_kinetix_clips_actions_per_type(name):
    level = load_level(name)
    n_motor = level.static_params.num_motor_bindings
    A = level.action_dim
    is_motor = np.arange(A) < n_motor
    low = np.where(is_motor, -1.0, 0.0)

    @jax.jit
    def rollout(actions):  # [T, A] -> states' positions and observations after each step
        _, state = level.reset(jax.random.PRNGKey(0))

        def body(state, xs):
            a, j = xs
            obs, state, _, _, _ = level.step(jax.random.fold_in(jax.random.PRNGKey(1), j), state, a)
            return state, obs

        _, obs = jax.lax.scan(body, state, (actions, jnp.arange(actions.shape[0])))
        return obs

    raw = np.random.default_rng(0).normal(0.0, 4.0, size=(40, A)).astype(np.float32)  # mostly out of range
    assert (np.abs(raw) > 1).mean() > 0.5
    per_type = np.clip(raw, low, 1.0)
    old_clip = np.clip(raw, -1.0, 1.0)
    out_raw, out_type, out_old = (np.asarray(rollout(jnp.asarray(a))) for a in (raw, per_type, old_clip))
    np.testing.assert_array_equal(out_raw, out_type)
    np.testing.assert_array_equal(out_raw, out_old)
    assert not np.array_equal(out_raw, np.asarray(rollout(jnp.asarray(per_type * 0.5))))
