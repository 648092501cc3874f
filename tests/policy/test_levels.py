"""Packed levels (`rtcbench.levels.pack_state`): the same physics in smaller arrays.

`l/h17_unicycle` (a size-L level: 12 polygon, 4 circle, 6 joint, 2 thruster slots) is stepped with the
same random actions, packed and unpacked, and every active body must follow the same trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtcbench.levels import level_slug, split_packed

LEVEL = "l/h17_unicycle"
B, T = 16, 120


def test_packed_names():
    assert split_packed("l/h17_unicycle:packed") == ("l/h17_unicycle", True)
    assert split_packed("s/h5_rotate_fall") == ("s/h5_rotate_fall", False)
    assert level_slug("l/h17_unicycle:packed") == "l_h17_unicycle_packed"
    assert level_slug("s/h5_rotate_fall") == "s_h5_rotate_fall"


def _trajectory(level, actions):
    """actions [T, B, A] -> (polygon positions [T, B, P, 2], circle positions [T, B, C, 2], done [T, B])."""

    def run(actions):
        _, state = jax.vmap(level.reset)(jax.random.split(jax.random.PRNGKey(0), B))

        def step(state, a):
            _, state, _, done, _ = jax.vmap(lambda s, x: level.step(jax.random.PRNGKey(0), s, x))(state, a)
            return state, (state.polygon.position, state.circle.position, done)

        return jax.lax.scan(step, state, actions)[1]

    return jax.device_get(jax.jit(run)(actions))


@pytest.mark.slow
def test_packed_level_has_the_same_physics():
    from rtcbench.levels import load_level

    full, packed = load_level(LEVEL), load_level(LEVEL + ":packed")
    sp = packed.static_params
    assert (sp.num_polygons, sp.num_circles, sp.num_joints) == (6, 2, 2)
    assert full.static_params.num_polygons == 12
    assert packed.action_dim == full.action_dim
    assert packed.obs_dim < full.obs_dim / 3
    # the solver and timing settings are the size class's, untouched
    assert (sp.num_solver_iterations, sp.frame_skip, sp.num_static_fixated_polys) == (
        full.static_params.num_solver_iterations, full.static_params.frame_skip,
        full.static_params.num_static_fixated_polys)

    actions = jax.random.uniform(jax.random.PRNGKey(1), (T, B, full.action_dim), minval=-1.0, maxval=1.0)
    poly_f, circ_f, done_f = _trajectory(full, actions)
    poly_p, circ_p, done_p = _trajectory(packed, actions)
    active_poly = np.flatnonzero(np.asarray(full.init_state.polygon.active))
    active_circ = np.flatnonzero(np.asarray(full.init_state.circle.active))
    assert active_poly.max() < sp.num_polygons and active_circ.max() < sp.num_circles
    np.testing.assert_array_equal(done_f, done_p)
    assert done_f.any(), "the random actions should end some episodes (falls), so resets are compared too"
    np.testing.assert_allclose(poly_p[:, :, active_poly], poly_f[:, :, active_poly], atol=1e-4)
    np.testing.assert_allclose(circ_p[:, :, active_circ], circ_f[:, :, active_circ], atol=1e-4)
    # the motion is real: the bodies move by more than the tolerance
    assert float(jnp.abs(circ_f[-1] - circ_f[0]).max()) > 0.1
