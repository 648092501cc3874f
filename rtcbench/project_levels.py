"""The project's own levels (``rtc/<name>``): small, documented edits of kinetix-env levels.

Why they exist: a delay benchmark needs levels on which a competent policy loses solve rate when it acts on
stale observations (issue #3). Kinetix levels are deterministic apart from the action noise, so a stable task
can be solved almost open-loop and is insensitive to a 4-step delay, whatever its shapes; only an *unstable*
task (an inverted pendulum, a ball balanced on a curved top) amplifies the noise fast enough that feedback
4-8 steps old is too late. Of the 40-odd built-in levels screened (README, "Candidates rejected"), the
unstable ones either were learned and are shipped (``l/h4_cartpole``, ``l/h17_unicycle``) or could not be
learned in 2M PPO steps, partly because their goals are out of reach of the balanced body
(``l/hard_cartpole_*``: the goal is about 2.7 m above the pole's tip). Designs that were tried and not
learned (a ball balanced on a round head; the hard cart-poles with reachable goals) are in the README's
"Candidates rejected" table, not here: every design in ``DESIGNS`` is shipped.

Each design below starts from a kinetix-env level, changes a few fields, recomputes masses, inertias and the
collision matrix, and is written with the source level's size-L arrays (load it with ``:packed`` for speed).
The shipped JSONs in ``rtcbench/level_files/`` are exactly what this module writes; ``tests/policy/
test_project_levels.py`` regenerates them and compares. Regenerate with ``python -m rtcbench.project_levels``.

Shape roles (kinetix): 0 default, 1 green (the body that must reach the goal), 2 blue (the goal), 3 red
(touching it with green ends the episode as a failure).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rtcbench.levels import PROJECT_LEVEL_DIR, PROJECT_PREFIX, load_level


def _set(bodies, index: int, **fields):
    """``bodies`` (a kinetix RigidBody / Joint array) with ``fields`` of entry ``index`` replaced."""
    return bodies.replace(**{k: getattr(bodies, k).at[index].set(v) for k, v in fields.items()})


def _finish(state, static_params):
    """Recompute what the edits invalidate: masses and inertias from densities and sizes, and the collision
    matrix from the joints (jointed shapes do not collide)."""
    from jax2d.engine import calculate_collision_matrix, recalculate_mass_and_inertia

    state = recalculate_mass_and_inertia(state, static_params, state.polygon_densities, state.circle_densities)
    return state.replace(collision_matrix=calculate_collision_matrix(static_params, state.joint))


def cartpole_short():
    """``rtc/cartpole_short``: ``l/h4_cartpole`` with its pole shortened from 1.14 to 0.80 m.

    ```
     l/h4_cartpole                rtc/cartpole_short
                      [goal]                          [goal]   goal lowered with the head
        (G) head
         |                          (G)
         | pole 1.14 m               |  pole 0.80 m, hinge and head joints moved with its ends
      [=cart=]                    [=cart=]
      o      o                    o      o
    ```
    The task is the cart-pole's (drive right 3.7 m with the pole up; the head touching the red floor fails),
    but the shorter pendulum falls faster (from near-upright with no action: 36 steps to the floor instead of
    44), so stale feedback costs more. Everything else (cart, wheels, motors, masses per area, goal x) is the
    source level's.
    """
    import jax.numpy as jnp

    level = load_level("l/h4_cartpole")
    state, static_params = level.init_state, level.static_params
    cart, pole, goal = 4, 5, 6  # polygon slots
    head = 2  # circle slot
    head_joint, hinge = 2, 3  # joint slots: head fixed to the pole's top; pole hinged to the cart
    scale_y = jnp.array([1.0, 0.40 / 0.57])  # the pole's half-length 0.57 -> 0.40
    polygons, joints, circles = state.polygon, state.joint, state.circle
    polygons = _set(polygons, pole, vertices=polygons.vertices[pole] * scale_y)
    joints = _set(joints, hinge, b_relative_pos=joints.b_relative_pos[hinge] * scale_y)
    joints = _set(joints, head_joint, a_relative_pos=joints.a_relative_pos[head_joint] * scale_y)
    # stack cart -> hinge -> pole centre -> head, as in the source level (in Python floats, then float32)
    pole_y = (float(polygons.position[cart][1]) - float(joints.b_relative_pos[hinge][1])
              + float(joints.a_relative_pos[hinge][1]))
    head_y = pole_y + float(joints.a_relative_pos[head_joint][1])
    goal_y = head_y + (1.89 - 1.74)  # the source's goal-above-head, rounded: the upright head overlaps it by 0.11
    polygons = _set(polygons, pole, position=jnp.array([float(polygons.position[pole][0]), pole_y]))
    polygons = _set(polygons, goal, position=jnp.array([float(polygons.position[goal][0]), goal_y]))
    circles = _set(circles, head, position=jnp.array([float(circles.position[head][0]), head_y]))
    state = state.replace(polygon=polygons, joint=joints, circle=circles)
    return _finish(state, static_params), static_params, level.env_params


DESIGNS: dict[str, Callable] = {
    "cartpole_short": cartpole_short,
}


def write(stem: str, folder: Path = PROJECT_LEVEL_DIR) -> Path:
    """Build design ``stem`` and write ``folder/<stem>.json`` (kinetix's level JSON format)."""
    from kinetix.util.saving import export_env_state_to_json

    state, static_params, env_params = DESIGNS[stem]()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    export_env_state_to_json(str(path), state, static_params, env_params)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m rtcbench.project_levels [STEM...]``: (re)write the named designs, or all of them."""
    stems = (argv if argv is not None else sys.argv[1:]) or sorted(DESIGNS)
    unknown = [s for s in stems if s not in DESIGNS]
    if unknown:
        print(f"unknown design(s) {unknown}; known: {sorted(DESIGNS)}", file=sys.stderr)
        return 2
    for stem in stems:
        print(f"{PROJECT_PREFIX}{stem} -> {write(stem)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
