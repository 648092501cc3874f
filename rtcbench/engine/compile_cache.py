"""JAX's persistent compilation cache for `rtcbench run` (issue #15): a second run of a scenario loads its
compiled episodes from disk instead of compiling them again (30-37 s each on 2 CPU cores).

The cache is JAX's own (``jax_compilation_cache_dir``); rtcbench only chooses the folder and counts hits.
Folder: ``--compile-cache DIR``, else ``$RTCBENCH_COMPILE_CACHE``, else JAX's own
``$JAX_COMPILATION_CACHE_DIR``, else ``$XDG_CACHE_HOME/rtcbench/jax`` (``~/.cache/rtcbench/jax``). ``--no-compile-cache`` switches it off. A cached program is keyed by JAX on
the computation, the compiler and the device, so a changed policy shape, method, level or JAX version
simply misses. Results do not depend on whether a program came from the cache (it is the same program).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_CACHE = "RTCBENCH_COMPILE_CACHE"
_HIT, _MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0


COUNTS = CacheCounts()
_listening = False


def _listen(event: str, **_kwargs) -> None:
    if event == _HIT:
        COUNTS.hits += 1
    elif event == _MISS:
        COUNTS.misses += 1


def default_cache_dir() -> Path:
    for env in (ENV_CACHE, "JAX_COMPILATION_CACHE_DIR"):
        if os.environ.get(env):
            return Path(os.environ[env])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rtcbench" / "jax"


def enable(path: str | os.PathLike | None) -> Path | None:
    """Point JAX's persistent cache at ``path`` (None: switch it off) and count its hits and misses.
    Call before the first compilation of the process."""
    import jax
    from jax import monitoring

    global _listening
    if not _listening:
        monitoring.register_event_listener(_listen)
        _listening = True
    if path is None:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # cache every episode (they take tens of seconds); small helper programs are not worth a file
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return folder
