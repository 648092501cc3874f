"""The one sha256-of-a-file helper (checkpoints, traces, level files and scenarios all hash with it)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# (resolved path, size, mtime_ns) -> hex digest. A file rewritten in place changes size or mtime, so a
# stale digest is never returned for it.
_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes (memoized on path, size and mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        digest = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _memo[key] = digest.hexdigest()
    return _memo[key]
