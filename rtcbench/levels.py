"""Kinetix levels: one place that turns a level name into an environment.

A level is a kinetix-env built-in name such as ``s/h4_thrust_aim`` (size prefix ``s``, ``m`` or ``l``), a
project level ``rtc/<name>`` (a JSON shipped in ``rtcbench/level_files/``, made by
``rtcbench/project_levels.py`` from a kinetix-env level; stored with size-L arrays), or a path to a level
JSON file. Every part of rtcbench (policy training, evaluation, the rollout engine) builds its environment
here, so the observation and action spaces always agree.

Setup (the reference benchmark's): symbolic flat observations, continuous actions, ``frame_skip`` 2
(one control step = two physics frames of 1/60 s), auto-reset to the same fixed level, and the
size-specific ``StaticEnvParams`` taken from the level's size prefix (or from the JSON for a path).

**Packed levels.** A name with the suffix ``:packed`` (``l/h17_unicycle:packed``) is the same level with its
entity arrays cut to the smallest sizes that hold its active shapes, joints and thrusters, instead of its
size class's. Kinetix simulates every array slot, active or not, so a size-L level whose design fits in
6 polygons and 2 circles runs several times faster packed (measured on 2 cores, batch 32: 7,300 vs 1,500
env-steps/s for ``l/h17_unicycle``). Packing keeps every active entity, its order, the joints' and
thrusters' shape indices (remapped), the level's ``EnvParams`` and the physics settings, so the physics is
the same; only the observation is shorter (its inactive slots are gone), so a policy trained on a packed
level is packed-only. Trajectories agree to float rounding where the contact order does not change
(``tests/policy/test_levels.py`` checks ``l/h17_unicycle`` step by step); in contact-rich scenes the
solver visits contacts in another order and trajectories may drift apart, as any float reordering would.
```
 size-L arrays   [wall wall wall wall | body body | - - - - - -]  polygons   (12 slots)
                 [circle circle | - -]                                       circles    (4 slots)
 packed          [wall wall wall wall | body body]                           polygons   (6 slots)
                 [circle circle]                                             circles    (>= 2 slots)
 a joint's shape index i >= 12 (a circle) becomes i - 12 + 6
```
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rtcbench.errors import UserError

if TYPE_CHECKING:
    import jax

# JAX and kinetix are imported inside the functions that need them, so that scenario validation and
# `rtcbench schedule` (which list levels and make slugs) never import JAX.

SIZES = ("s", "m", "l")
# Project levels: ``rtc/<stem>`` names the file ``rtcbench/level_files/<stem>.json``.
PROJECT_PREFIX = "rtc/"
PROJECT_LEVEL_DIR = Path(__file__).parent / "level_files"
# Suffix of a level name that asks for the packed variant (see the module docstring).
PACKED_SUFFIX = ":packed"
# One control step is frame_skip physics frames of 1/60 s: 33.3 ms, the natural dt_ms default.
FRAME_SKIP = 2
# Std of the Gaussian noise added to every executed action (docs/DESIGN.md §2), in training, eval and the engine.
ACTION_NOISE_STD = 0.1


class LevelError(ValueError):
    """A level name or file that cannot be loaded."""


@dataclass(frozen=True)
class Level:
    """A loaded level: the environment plus its traced parameters and initial state.

    ``env`` and ``static_params`` are shape-bearing (static); ``env_params`` and ``init_state`` are
    pytrees that are passed into jitted functions as traced inputs.
    """

    name: str
    size: str
    env: object  # kinetix KinetixEnv
    env_params: object  # kinetix EnvParams (traced)
    static_params: object  # kinetix StaticEnvParams (static)
    init_state: object  # kinetix EnvState (traced)
    obs_dim: int
    action_dim: int

    def reset(self, key: jax.Array):
        """Reset one environment to the level's fixed initial state -> (obs, state)."""
        return self.env.reset(key, self.env_params)

    def step(self, key: jax.Array, state, action: jax.Array):
        """One control step (frame_skip physics frames) -> (obs, state, reward, done, info)."""
        return self.env.step(key, state, action, self.env_params)


def level_slug(level: str) -> str:
    """``s/h4_thrust_aim`` -> ``s_h4_thrust_aim``, ``l/h17_unicycle:packed`` -> ``l_h17_unicycle_packed``
    (folder names, and ``{level}`` in checkpoint paths)."""
    return level.replace("/", "_").replace(":", "_")


def split_packed(name: str) -> tuple[str, bool]:
    """``l/h17_unicycle:packed`` -> (``l/h17_unicycle``, True); any other name -> (name, False)."""
    if name.endswith(PACKED_SUFFIX):
        return name[: -len(PACKED_SUFFIX)], True
    return name, False


def _kinetix_level_dir() -> Path | None:
    """kinetix-env's built-in level folder, found without importing kinetix (which imports JAX)."""
    spec = importlib.util.find_spec("kinetix")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "levels"
    return folder if folder.is_dir() else None


def builtin_levels() -> list[str]:
    """All built-in level names that kinetix-env ships, e.g. ``s/h4_thrust_aim`` (sorted by size, then name)."""
    folder = _kinetix_level_dir()
    if folder is None:
        return []
    return [f"{size}/{p.stem}" for size in SIZES for p in sorted((folder / size).glob("*.json"))]


def project_levels() -> list[str]:
    """The project's own level names, ``rtc/<stem>`` for each JSON in ``rtcbench/level_files/`` (sorted)."""
    return [PROJECT_PREFIX + p.stem for p in sorted(PROJECT_LEVEL_DIR.glob("*.json"))]


def known_levels() -> list[str]:
    """Every level name that needs no path: kinetix-env's built-ins, then the project's ``rtc/`` levels."""
    return builtin_levels() + project_levels()


def project_level_file(name: str) -> Path | None:
    """The shipped JSON of a project level (``rtc/<stem>``, ``:packed`` allowed); None for any other name or
    a project name with no file."""
    base = split_packed(name)[0]
    if not base.startswith(PROJECT_PREFIX):
        return None
    path = PROJECT_LEVEL_DIR / (base[len(PROJECT_PREFIX):] + ".json")
    return path if path.is_file() else None


def level_path(name: str) -> Path | None:
    """The JSON path of a level, built-in, project or user file; None if it does not exist."""
    import kinetix.util.saving as saving

    if name.startswith(PROJECT_PREFIX):
        return project_level_file(name)
    if name.endswith(".json") or os.sep in name.strip("/").split("/", 1)[-1] or Path(name).exists():
        p = Path(name)
        if p.exists():
            return p
    builtin = Path(saving.BASE_DIR) / (name if name.endswith(".json") else name + ".json")
    return builtin if builtin.exists() else None


def level_size(name: str) -> str:
    """The size class of a level: the built-in prefix; ``l`` for project levels (their files hold size-L
    arrays) and for user JSON paths."""
    head = name.split("/", 1)[0]
    if head in SIZES and "/" in name:
        return head
    return "l"


def used_action_dims(level: Level) -> list[int]:
    """The action dimensions that drive something in this level: the motor bindings of its active motorised
    joints and the thruster bindings (after the motor block) of its active thrusters. Kinetix's continuous
    action has ``num_motor_bindings + num_thruster_bindings`` entries whatever the level uses."""
    import numpy as np

    st, sp = level.init_state, level.static_params
    joints = np.asarray(st.joint.active) & np.asarray(st.joint.motor_on)
    motors = {int(b) for b in np.asarray(st.motor_bindings)[joints]}
    thrusters = {sp.num_motor_bindings + int(b) for b in np.asarray(st.thruster_bindings)[np.asarray(st.thruster.active)]}
    return sorted(motors | thrusters)


def pack_state(state, static_params):
    """-> (state, static_params) with every entity array cut to the smallest size that holds the level.

    The cut keeps slots ``[0, last active + 1)`` of each array (at least the ``num_static_fixated_polys``
    wall polygons, and at least 2 circles and 1 joint and thruster: jax2d's pair tables need them), shifts
    the circle part of joint and thruster shape indices (circles are numbered after all polygon slots), and
    rebuilds the collision matrix and the empty contact caches for the new sizes.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax2d.engine import calculate_collision_matrix, get_empty_collision_manifolds

    def needed(active, floor: int) -> int:
        idx = np.flatnonzero(np.asarray(active))
        return max(int(idx.max()) + 1 if idx.size else 0, floor)

    old_polys = int(state.polygon.position.shape[0])
    n_poly = needed(state.polygon.active, static_params.num_static_fixated_polys)
    n_circ = needed(state.circle.active, 2)
    n_joint = needed(state.joint.active, 1)
    n_thr = needed(state.thruster.active, 1)
    packed_static = static_params.replace(num_polygons=n_poly, num_circles=n_circ, num_joints=n_joint,
                                          num_thrusters=n_thr)

    def cut(n, tree):
        return jax.tree.map(lambda x: x[:n], tree)

    def shift(shape_index):
        return jnp.where(shape_index >= old_polys, shape_index - (old_polys - n_poly), shape_index)

    joint = cut(n_joint, state.joint)
    thruster = cut(n_thr, state.thruster)
    joint = joint.replace(a_index=shift(joint.a_index), b_index=shift(joint.b_index))
    thruster = thruster.replace(object_index=shift(thruster.object_index))
    rr, cr, cc = get_empty_collision_manifolds(packed_static)
    packed = state.replace(
        polygon=cut(n_poly, state.polygon),
        polygon_shape_roles=state.polygon_shape_roles[:n_poly],
        polygon_highlighted=state.polygon_highlighted[:n_poly],
        polygon_densities=state.polygon_densities[:n_poly],
        circle=cut(n_circ, state.circle),
        circle_shape_roles=state.circle_shape_roles[:n_circ],
        circle_highlighted=state.circle_highlighted[:n_circ],
        circle_densities=state.circle_densities[:n_circ],
        joint=joint,
        motor_bindings=state.motor_bindings[:n_joint],
        motor_auto=state.motor_auto[:n_joint],
        thruster=thruster,
        thruster_bindings=state.thruster_bindings[:n_thr],
        collision_matrix=calculate_collision_matrix(packed_static, joint),
        acc_rr_manifolds=rr,
        acc_cr_manifolds=cr,
        acc_cc_manifolds=cc,
    )
    return packed, packed_static


@functools.lru_cache(maxsize=32)
def load_level(name: str) -> Level:
    """Load a level by built-in name or JSON path, optionally with the ``:packed`` suffix.
    Raises LevelError with the name on failure."""
    import jax
    import jax.numpy as jnp
    import kinetix.environment as kenv
    from kinetix.util.saving import expand_env_state, load_from_json_file

    base_name, packed = split_packed(name)
    path = level_path(base_name)
    if path is None:
        raise LevelError(
            f"level {name!r} is neither a kinetix-env built-in (e.g. 's/h4_thrust_aim'), a project level "
            f"(e.g. 'rtc/<name>'; see `rtcbench levels`) nor an existing level JSON file"
        )
    try:
        state, file_static, file_env_params = load_from_json_file(str(path))
    except KeyError as exc:  # valid JSON that is not a level: kinetix indexes its keys directly
        raise LevelError(
            f"level {name!r}: {path} is not a Kinetix level file (it has no key {exc.args[0]!r}; a level JSON "
            "holds 'env_state', 'env_params' and 'static_env_params', as `kinetix` saves them)"
        ) from None
    except Exception as exc:  # kinetix raises assorted errors for a malformed file
        raise LevelError(f"level {name!r}: could not load {path}: {exc}") from None
    size = level_size(base_name)
    static_params = kenv.static_env_params_from_size(size).replace(frame_skip=FRAME_SKIP)
    # A user JSON may be larger than its size class: take the elementwise max so the state fits.
    if file_static.num_polygons > static_params.num_polygons or file_static.num_circles > static_params.num_circles:
        static_params = static_params.replace(
            num_polygons=max(file_static.num_polygons, static_params.num_polygons),
            num_circles=max(file_static.num_circles, static_params.num_circles),
            num_joints=max(file_static.num_joints, static_params.num_joints),
            num_thrusters=max(file_static.num_thrusters, static_params.num_thrusters),
        )
    state = expand_env_state(state, static_params)
    if packed:
        state, static_params = pack_state(state, static_params)
    env_params = kenv.EnvParams()
    env = kenv.make_kinetix_env(
        action_type=kenv.ActionType.CONTINUOUS,
        observation_type=kenv.ObservationType.SYMBOLIC_FLAT,
        reset_fn=lambda key: state,
        env_params=env_params,
        static_env_params=static_params,
        auto_reset=True,
    )
    obs, _ = env.reset(jax.random.PRNGKey(0), env_params)
    action_dim = int(env.action_space(env_params).shape[0])
    return Level(
        name=name,
        size=size,
        env=env,
        env_params=env_params,
        static_params=static_params,
        init_state=state,
        obs_dim=int(jnp.asarray(obs).shape[-1]),
        action_dim=action_dim,
    )


def load_level_or_user_error(name: str, *, field: str, path: str | None = None) -> Level:
    """``load_level`` for a name that comes from user input (an option, a scenario, a sidecar): a LevelError
    becomes a UserError naming ``field`` (and ``path``), which the CLI reports with exit code 2."""
    try:
        return load_level(name)
    except LevelError as exc:
        raise UserError(str(exc), path=path, field=field) from None
