"""Kinetix levels: one place that turns a level name into an environment.

A level is either a kinetix-env built-in name such as ``s/h4_thrust_aim`` (size prefix ``s``, ``m`` or
``l``) or a path to a level JSON file. Every part of rtcbench (policy training, evaluation, the rollout
engine) builds its environment here, so the observation and action spaces always agree.

Setup (the reference benchmark's): symbolic flat observations, continuous actions, ``frame_skip`` 2
(one control step = two physics frames of 1/60 s), auto-reset to the same fixed level, and the
size-specific ``StaticEnvParams`` taken from the level's size prefix (or from the JSON for a path).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jax

# JAX and kinetix are imported inside the functions that need them, so that scenario validation and
# `rtcbench schedule` (which list levels and make slugs) never import JAX.

SIZES = ("s", "m", "l")
# One control step is frame_skip physics frames of 1/60 s: 33.3 ms, the natural dt_ms default.
FRAME_SKIP = 2
# Std of the Gaussian noise added to every executed action (DESIGN.md §2), in training, eval and the engine.
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
    """``s/h4_thrust_aim`` -> ``s_h4_thrust_aim`` (folder names, and ``{level}`` in checkpoint paths)."""
    return level.replace("/", "_")


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


def level_path(name: str) -> Path | None:
    """The JSON path of a level, built-in or user file; None if it does not exist."""
    import kinetix.util.saving as saving

    if name.endswith(".json") or os.sep in name.strip("/").split("/", 1)[-1] or Path(name).exists():
        p = Path(name)
        if p.exists():
            return p
    builtin = Path(saving.BASE_DIR) / (name if name.endswith(".json") else name + ".json")
    return builtin if builtin.exists() else None


def level_size(name: str) -> str:
    """The size class of a level: the built-in prefix, or the JSON's recorded size (default ``l``)."""
    head = name.split("/", 1)[0]
    if head in SIZES and "/" in name:
        return head
    return "l"


@functools.lru_cache(maxsize=32)
def load_level(name: str) -> Level:
    """Load a level by built-in name or JSON path. Raises LevelError with the name on failure."""
    import jax
    import jax.numpy as jnp
    import kinetix.environment as kenv
    from kinetix.util.saving import expand_env_state, load_from_json_file

    path = level_path(name)
    if path is None:
        raise LevelError(
            f"level {name!r} is neither a kinetix-env built-in (e.g. 's/h4_thrust_aim'; "
            f"see `rtcbench levels`) nor an existing level JSON file"
        )
    try:
        state, file_static, file_env_params = load_from_json_file(str(path))
    except Exception as exc:  # kinetix raises assorted errors for a malformed file
        raise LevelError(f"level {name!r}: could not load {path}: {exc}") from None
    size = level_size(name)
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
