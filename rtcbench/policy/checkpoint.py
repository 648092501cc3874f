"""Flow-policy checkpoints: weights as flax msgpack, provenance in a JSON sidecar. Never pickles.

A checkpoint ``NAME`` is two files side by side:

    NAME.msgpack   flax msgpack of the nnx state as a pure dict (integer keys of nnx.List stored as strings)
    NAME.json      sidecar: obs_dim, action_dim, H, preset, config (the full PolicyConfig), level, kind
                   ("bc" | "ttrtc" | "vlash" | "a2c2"), kinetix_version, training (commands, seeds, ...),
                   solve_rate ({rate, n, solved, wilson95}), sha256 of the msgpack bytes

Kinds beyond bc: ``ttrtc`` (per-token flow time; same network), ``vlash`` (its config has ``cond_dim`` > 0:
the committed-action conditioning, rtcbench.policy.vlash) and ``a2c2`` (the weights hold a frozen base
policy under ``base`` and the correction head under ``head``, rtcbench.policy.a2c2; ``config`` is the base
policy's, ``head_config`` the head's, ``base_kind`` the base checkpoint's kind). bc and ttrtc sidecars
carry no ``cond_dim`` (it is 0) and load as before.

``load_policy`` refuses pickles, a sha256 that does not match the sidecar, and dims that do not match
the level, each with a `UserError` that names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from rtcbench.errors import UserError
from rtcbench.levels import load_level_or_user_error

KINDS = ("bc", "ttrtc", "vlash", "a2c2")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".joblib")


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``NAME``, ``NAME.msgpack`` or ``NAME.json`` -> (weights path, sidecar path)."""
    p = Path(path)
    if p.suffix in (".msgpack", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".msgpack"), p.with_name(p.name + ".json")


def _looks_like_pickle(head: bytes, tail: bytes) -> bool:
    # Pickle protocols 2-5 start with PROTO (0x80, version) and every pickle ends with STOP ('.').
    # A flax msgpack of our state dict starts with a map marker of >= 9 keys (0x89..), never 0x80 0x02-0x05.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and tail.endswith(b".")


def _preset_of(cfg) -> str | None:
    from rtcbench.policy.model import PRESETS

    for name, values in PRESETS.items():
        if all(getattr(cfg, k) == v for k, v in values.items()):
            return name
    return None


def _stringify_keys(tree):
    if isinstance(tree, dict):
        return {str(k): _stringify_keys(v) for k, v in tree.items()}
    return tree


def _restore_int_keys(tree):
    if isinstance(tree, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _restore_int_keys(v) for k, v in tree.items()}
    return tree


def save_policy(model, path: str | os.PathLike, meta: dict) -> str:
    """Write ``NAME.msgpack`` + ``NAME.json`` for a FlowPolicy and return the sha256 of the msgpack.

    ``meta`` must hold ``level`` and ``kind`` (one of KINDS); anything else (training commands and
    seeds, solve_rate, ...) is copied into the sidecar. Dims, H, the config, the preset, the kinetix-env
    version and the hash are filled in here (and an a2c2 policy's ``head_config``).
    """
    import flax.nnx as nnx
    from flax import serialization

    kind = meta.get("kind")
    if kind not in KINDS:
        raise ValueError(f"checkpoint meta 'kind' must be one of {KINDS}, got {kind!r}")
    if "level" not in meta:
        raise ValueError("checkpoint meta must name the 'level' the policy was trained on")
    if (kind == "a2c2") != hasattr(model, "head"):
        raise ValueError("kind 'a2c2' is the checkpoint of an A2C2Policy (a base policy and its head), and only that")
    if (kind == "vlash") != bool(getattr(model.cfg, "cond_dim", 0)) and kind != "a2c2":
        raise ValueError("kind 'vlash' is the checkpoint of a conditioned policy (cond_dim > 0), and only that")
    weights_path, sidecar_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    _, state = nnx.split(model)
    blob = serialization.msgpack_serialize(_stringify_keys(nnx.to_pure_dict(state)))
    sha = hashlib.sha256(blob).hexdigest()
    cfg = model.cfg
    sidecar = dict(meta)
    sidecar.update(
        format="rtcbench-flow-policy/1",
        obs_dim=cfg.obs_dim,
        action_dim=cfg.action_dim,
        H=cfg.H,
        preset=meta.get("preset") or _preset_of(cfg),
        config=cfg.to_dict(),
        **({"head_config": model.head.cfg.to_dict()} if kind == "a2c2" else {}),
        kinetix_version=_kinetix_version(),
        weights=weights_path.name,
        sha256=sha,
    )
    # Write weights then sidecar, each atomically (tmp + rename), so a crash never leaves a torn file.
    tmp = weights_path.with_name(weights_path.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, weights_path)
    tmp = sidecar_path.with_name(sidecar_path.name + ".tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, sidecar_path)
    return sha


def _kinetix_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kinetix-env")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class LoadedPolicy:
    """A verified checkpoint. ``state`` is an nnx.State (a traced pytree); ``model()`` merges it."""

    path: Path
    config: object  # PolicyConfig
    graphdef: object  # nnx.GraphDef
    state: object  # nnx.State
    meta: dict
    sha256: str
    kind: str

    def model(self):
        import flax.nnx as nnx

        return nnx.merge(self.graphdef, self.state)


def _check_dims(cfg, meta: dict, weights_path: Path, level) -> None:
    if (cfg.obs_dim, cfg.action_dim) != (level.obs_dim, level.action_dim):
        raise UserError(
            f"policy dims do not match the level: the checkpoint has obs_dim={cfg.obs_dim}, "
            f"action_dim={cfg.action_dim} (trained on {meta.get('level')!r}) but level {level.name!r} has "
            f"obs_dim={level.obs_dim}, action_dim={level.action_dim}",
            path=str(weights_path),
        )


def load_policy_on_level(path: str | os.PathLike, level_name: str | None = None):
    """-> (LoadedPolicy, Level): a checkpoint, read and verified once, and the level it runs on:
    ``level_name`` (a ``--level`` option) or else the level its sidecar names, dims checked as in
    ``load_policy(path, level)``. For commands whose level defaults to the checkpoint's."""
    loaded = load_policy(path)
    name = level_name or loaded.meta.get("level")
    if not name:
        raise UserError("the checkpoint names no level; pass --level", path=str(loaded.path), field="--level")
    level = load_level_or_user_error(name, field="--level")
    _check_dims(loaded.config, loaded.meta, loaded.path, level)
    return loaded, level


def load_policy(path: str | os.PathLike, level=None) -> LoadedPolicy:
    """Load and verify a checkpoint. ``level``: a `Level`, a level name, or None to skip the dims check.

    Raises `UserError` naming the file for: a pickle, a missing file or sidecar, a malformed sidecar,
    a sha256 mismatch, or obs/action dims that differ from the level's.
    """
    import flax.nnx as nnx
    import jax.numpy as jnp
    import numpy as np
    from flax import serialization, traverse_util

    from rtcbench.policy.model import PolicyConfig, make_policy

    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            "pickle checkpoints are refused (they can run arbitrary code); "
            "use a NAME.msgpack weights file with its NAME.json sidecar",
            path=str(p),
        )
    weights_path, sidecar_path = checkpoint_paths(p)
    if not weights_path.exists():
        raise UserError("policy weights file not found (expected NAME.msgpack + NAME.json)", path=str(weights_path))
    blob = weights_path.read_bytes()
    if _looks_like_pickle(blob[:2], blob[-1:]):
        raise UserError(
            "this file is a Python pickle, which is refused (it can run arbitrary code); "
            "a checkpoint must be flax msgpack weights with a JSON sidecar",
            path=str(weights_path),
        )
    if not sidecar_path.exists():
        raise UserError("policy sidecar not found; every checkpoint needs its NAME.json", path=str(sidecar_path))
    try:
        meta = json.loads(sidecar_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"sidecar is not valid JSON: {exc}", path=str(sidecar_path)) from None
    if not isinstance(meta, dict):
        raise UserError("sidecar must be a JSON object", path=str(sidecar_path))
    for key in ("sha256", "config", "kind"):
        if key not in meta:
            raise UserError(f"sidecar lacks the required key {key!r}", path=str(sidecar_path), field=key)
    sha = hashlib.sha256(blob).hexdigest()
    if sha != meta["sha256"]:
        raise UserError(
            f"sha256 mismatch: the weights hash to {sha[:16]}... but the sidecar records "
            f"{str(meta['sha256'])[:16]}...; the file was modified or belongs to another checkpoint",
            path=str(weights_path),
        )
    if meta["kind"] not in KINDS:
        raise UserError(f"kind must be one of {list(KINDS)}, got {meta['kind']!r}", path=str(sidecar_path), field="kind")
    try:
        cfg = PolicyConfig(**meta["config"])
    except TypeError as exc:
        raise UserError(f"config does not describe a PolicyConfig: {exc}", path=str(sidecar_path), field="config") from None
    if (meta["kind"] == "vlash") != bool(cfg.cond_dim) and meta["kind"] != "a2c2":
        raise UserError(f"a {meta['kind']!r} checkpoint with cond_dim={cfg.cond_dim} (only vlash checkpoints take "
                        "a conditioning input)", path=str(sidecar_path), field="config")
    make = lambda: make_policy(cfg)
    if meta["kind"] == "a2c2":
        from rtcbench.policy.a2c2 import HeadConfig, make_a2c2_policy

        try:
            head_cfg = HeadConfig(**meta["head_config"])
        except (KeyError, TypeError) as exc:
            raise UserError(f"an a2c2 sidecar needs head_config describing a HeadConfig: {exc!r}",
                            path=str(sidecar_path), field="head_config") from None
        make = lambda: make_a2c2_policy(cfg, head_cfg)
    if level is not None:
        if isinstance(level, str):
            level = load_level_or_user_error(level, field="level")
        _check_dims(cfg, meta, weights_path, level)
    try:
        restored = serialization.msgpack_restore(blob)
    except Exception as exc:  # msgpack raises assorted errors on corrupt bytes
        raise UserError(f"weights are not a flax msgpack state: {exc}", path=str(weights_path)) from None
    abstract = nnx.eval_shape(make)
    graphdef, state = nnx.split(abstract)
    expected = traverse_util.flatten_dict(_stringify_keys(nnx.to_pure_dict(state)), sep="/")  # abstract shapes
    got = traverse_util.flatten_dict(restored, sep="/") if isinstance(restored, dict) else {}
    if set(expected) != set(got):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        raise UserError(
            f"weights do not fit the sidecar's config (missing {missing[:4]}, unexpected {extra[:4]})",
            path=str(weights_path),
        )
    wrong = [k for k in expected if tuple(np.shape(got[k])) != tuple(expected[k].shape)]
    if wrong:
        raise UserError(f"weight shapes do not match the sidecar's config at {wrong[:4]}", path=str(weights_path))
    arrays = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in got.items()}, sep="/")
    nnx.replace_by_pure_dict(state, _restore_int_keys(arrays))
    return LoadedPolicy(
        path=weights_path, config=cfg, graphdef=graphdef, state=state, meta=meta, sha256=sha, kind=meta["kind"]
    )
