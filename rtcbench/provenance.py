"""Provenance of a run: code version, package versions, JAX backend and device, host.

Everything here is read-only: git is asked with ``--no-optional-locks`` so that it never rewrites the
index. A value that cannot be determined is recorded as None (e.g. not a git checkout), never guessed.
"""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = {
    "jax_version": "jax",
    "jaxlib_version": "jaxlib",
    "flax_version": "flax",
    "kinetix_version": "kinetix-env",
    "duckdb_version": "duckdb",
    "rtcbench_version": "rtcbench",
}

_REPO_ROOT = Path(__file__).resolve().parents[1]


def package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=_REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_state() -> tuple[str | None, bool | None]:
    """(commit sha of the rtcbench checkout, dirty flag); (None, None) outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = None if status is None else bool(status.strip())
    return commit.strip(), dirty


def jax_device() -> tuple[str, str]:
    """(JAX default backend, device kind of the first device), e.g. ("gpu", "NVIDIA H100 80GB HBM3")."""
    import jax

    backend = jax.default_backend()
    devices = jax.devices()
    kind = devices[0].device_kind if devices else "none"
    return backend, kind


def collect(include_jax_device: bool = True) -> dict:
    """Provenance columns of a run row (see rtcbench.store.schema.runs)."""
    commit, dirty = git_state()
    info: dict = {key: package_version(dist) for key, dist in PACKAGES.items()}
    info.update(git_commit=commit, git_dirty=dirty, host=socket.gethostname(), python_version=platform.python_version())
    if include_jax_device:
        info["jax_backend"], info["device_kind"] = jax_device()
    return info
