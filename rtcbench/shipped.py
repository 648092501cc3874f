"""Where the files rtcbench ships beside its code live: the report SQL, the shipped delay traces and, in a
checkout, the shipped policies.

In a checkout (and an editable install) they are the repository's own ``reports/*.sql`` and
``bench/traces/*.json``. A wheel cannot reach outside the package, so ``setup.py`` copies the same files
into ``rtcbench/_shipped/{reports,traces}/`` when it builds one; the lookup below prefers that copy
when it exists, so `rtcbench report` and `rtcbench trace show synthetic_bursty` work from any folder
after ``pip install .``. Nothing is duplicated in the repository.

Policies are not in the wheel: `shipped_policies` finds the checkout's ``policies/<level_slug>/bc.msgpack``
and ``policies/multiexpert/<level_slug>/bc.msgpack`` (the paths the shipped scenarios name with ``{level}``).

Shipped sidecars keep the modality measures as they were recorded: those measured before issue #23 call
``stochasticity`` ``spread``. `modality_value` reads a measure under either name, so that the sidecars
need not be rewritten (or the policies re-measured) to be read.
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


POLICY_DIR = _REPO_ROOT / "policies"
# Folders of policies/ that hold a level's BC checkpoint under its slug: the single-expert policy, then the
# multi-expert family (policies/ablation/ holds ablation variants, not a level's policy).
POLICY_FAMILIES = ("", "multiexpert")


def shipped_policies(level: str, policy_dir: Path | None = None) -> list[Path]:
    """The BC checkpoints shipped for one level name (``:packed`` is part of the name: a packed level's
    policy is not an unpacked one's), in `POLICY_FAMILIES` order; empty when none is, or outside a checkout."""
    from rtcbench.levels import level_slug

    root = POLICY_DIR if policy_dir is None else policy_dir
    return [p for family in POLICY_FAMILIES if (p := root / family / level_slug(level) / "bc.msgpack").is_file()]


# a modality measure's current name -> the name older sidecars record it under, and back
_MODALITY_ALIASES = {"stochasticity": "spread", "spread": "stochasticity"}


def modality_value(meta: dict | None, key: str) -> dict | None:
    """One modality measure (``{"value", "ci95"}``) of a sidecar, or of a policy summary recorded by a cell
    (anything with a ``modality`` entry), under ``key`` or its former or new name; None when not measured."""
    modality = (meta or {}).get("modality") or {}
    found = modality.get(key)
    if found is None and key in _MODALITY_ALIASES:
        found = modality.get(_MODALITY_ALIASES[key])
    return found or None
