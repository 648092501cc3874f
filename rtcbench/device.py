"""Choosing the JAX device: one place for `--device auto|cpu|gpu` (runs and the policy pipeline).

`gpu` with no GPU visible is an error, never a silent CPU run (docs/DESIGN.md §8). XLA's memory preallocation
is off by default so that several processes can share one GPU.
"""

from __future__ import annotations

import os

from rtcbench.errors import UserError

DEVICES = ("auto", "cpu", "gpu")


def select_device(device: str, allowed: tuple[str, ...] = DEVICES) -> str:
    """Restrict or check the JAX platform, then return the platform in use (``cpu``, ``gpu``, ...).

    Call before JAX runs anything: ``cpu`` also sets JAX_PLATFORMS so that no GPU backend is initialised.
    """
    if device not in allowed:
        raise UserError(f"must be one of {', '.join(allowed)}, got {device!r}", field="--device")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    if device == "gpu":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        if not gpus:
            raise UserError(
                "--device gpu was requested but JAX sees no GPU (jax.devices('gpu') is empty; backend is "
                f"{jax.default_backend()!r}); install the cuda12 extra or use --device cpu/auto. "
                "rtcbench never falls back to the CPU silently",
                field="--device",
            )
        jax.config.update("jax_default_device", gpus[0])
        return "gpu"
    if device == "cpu":
        jax.config.update("jax_default_device", jax.devices("cpu")[0])
        return "cpu"
    return jax.default_backend()
