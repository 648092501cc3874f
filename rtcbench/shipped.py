"""Where the files rtcbench ships beside its code live: the report SQL and the shipped delay traces.

In a checkout (and an editable install) they are the repository's own ``reports/*.sql`` and
``bench/traces/*.json``. A wheel cannot reach outside the package, so ``setup.py`` copies the same files
into ``rtcbench/_shipped/{reports,traces}/`` when it builds one; the lookup below prefers that copy
when it exists, so `rtcbench report` and `rtcbench trace show synthetic_bursty` work from any folder
after ``pip install .``. Nothing is duplicated in the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE.parent
# kind -> (folder inside a built wheel, folder in a checkout)
_LOCATIONS = {
    "reports": (_PACKAGE / "_shipped" / "reports", _REPO_ROOT / "reports"),
    "traces": (_PACKAGE / "_shipped" / "traces", _REPO_ROOT / "bench" / "traces"),
}


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``reports`` (SQL) or ``traces`` (JSON): the wheel's copy, else the checkout's."""
    packaged, checkout = _LOCATIONS[kind]
    return packaged if packaged.is_dir() else checkout
