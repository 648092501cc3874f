"""Where the files a scenario names live.

A ``levels`` entry is either a level name (a kinetix-env built-in or a project ``rtc/<name>`` level) or a
path to a level JSON; either may carry the suffix ``:packed`` (`rtcbench.levels.split_packed`). Relative
paths (policy checkpoints, traces, level JSONs) resolve against the scenario file's directory; ``{level}``
in a checkpoint path becomes the level's slug (``s/h4_thrust_aim`` -> ``s_h4_thrust_aim``).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from rtcbench.levels import level_slug, split_packed

# The method fields that may name a checkpoint of the method's own (`rtcbench.methods.config`).
METHOD_POLICY_ATTRS = ("policy", "weak_policy")


def is_level_path(level: str) -> bool:
    """Whether a ``levels`` entry is a level JSON path rather than a level name."""
    return split_packed(level)[0].endswith(".json")


def level_file(level: str) -> str:
    """A level JSON path without its ``:packed`` suffix."""
    return split_packed(level)[0]


def resolve_path(base_dir: Path, rel: str, level: str | None = None) -> Path:
    """``rel`` with ``{level}`` replaced by the level's slug, made absolute against ``base_dir`` and normalised."""
    if level is not None:
        rel = rel.replace("{level}", level_slug(level))
    p = Path(rel)
    return p if p.is_absolute() else Path(os.path.normpath(base_dir / p))


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file, in words for an error message (None when it is one):
    missing, a directory, a device or FIFO (``/dev/zero``), a symlink loop, a symlink to nothing."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink loop (following its links never reaches a file)"
        if path.is_symlink():
            return f"is a symlink to {os.readlink(path)}, which does not exist"
        if exc.errno == errno.ENOENT:
            return "does not exist"
        return f"cannot be read ({os.strerror(exc.errno) if exc.errno else exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"is {kind}, not a regular file"
