"""The hashes of a scenario and of its cells (sha256, hex).

- ``config_hash``: canonical JSON of the validated scenario (defaults filled in) + the content sha256
  of every referenced trace, policy checkpoint and level JSON (a user path or a project ``rtc/`` level;
  kinetix-env built-ins are pinned by the kinetix-env version in each run's provenance).
- ``comparability_key``: the same without seeds, rollouts and description: runs with equal keys measure
  the same thing and may be compared or pooled.
- per cell (level x method x setup): ``cell_config_hash`` and ``cell_comparability_key`` cover only what
  that cell depends on, so the store can pair a cell across scenarios and runs.

Every hash also covers the schedule version (`rtcbench.replay.tail.SCHEDULE_VERSION`, how delays are
drawn), so a change of the drawing makes runs 'not comparable' rather than a regression. The functions
take the `rtcbench.scenario.Scenario` as their first argument; its methods and properties of the same
names call them.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from rtcbench.errors import UserError
from rtcbench.hashing import file_sha256
from rtcbench.levels import project_level_file
from rtcbench.scenario.paths import METHOD_POLICY_ATTRS, is_level_path, level_file, resolve_path

if TYPE_CHECKING:
    from rtcbench.scenario.model import Cell, Scenario

# Fields of the scenario that change how much is measured or how it is labelled, not what is measured.
RUN_ONLY_FIELDS = ("seeds", "rollouts", "description")


def canonical(obj: Any) -> str:
    """JSON with sorted keys, no whitespace, no NaN: equal data gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha(obj: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical(obj).encode("utf-8")).hexdigest()


def schedule_version() -> int:
    """The schedule version every hash covers: `rtcbench.replay.tail.SCHEDULE_VERSION` as the package
    re-exports it, read when a hash is computed (``rtcbench.scenario.SCHEDULE_VERSION`` is the one name
    that governs the hashes)."""
    from rtcbench import scenario as package

    return package.SCHEDULE_VERSION


def canonical_json(scenario: Scenario, *, exclude_run: bool = False) -> str:
    """Canonical JSON of the validated scenario; ``exclude_run`` leaves out seeds, rollouts, description."""
    data = scenario.model_dump(mode="json")
    if exclude_run:
        for key in RUN_ONLY_FIELDS:
            data.pop(key)
    return canonical(data)


def level_file_sha256(scenario: Scenario, level: str) -> str | None:
    """sha256 of the level's JSON when rtcbench owns or reads it (a user path or a project ``rtc/`` level,
    which can change between commits); None for a kinetix-env built-in (pinned by the kinetix-env version
    in every run's provenance)."""
    if is_level_path(level):
        return file_sha256(resolve_path(scenario.base_dir, level_file(level)))
    project_file = project_level_file(level)
    return None if project_file is None else file_sha256(project_file)


def policy_sha256(scenario: Scenario, level: str) -> str:
    """sha256 of the level's checkpoint bytes (`rtcbench.hashing.file_sha256`, as the checkpoint loader hashes it)."""
    p = scenario.policy_path(level)
    if not p.is_file():
        raise UserError(f"policy checkpoint {p} does not exist for level {level!r}", path=str(scenario.path), field="policy")
    return file_sha256(p)


def file_digests(scenario: Scenario) -> dict[str, str]:
    """sha256 of every file the scenario's results depend on, keyed by role (needs the policies)."""
    out: dict[str, str] = {}
    for level in scenario.levels:
        level_digest = level_file_sha256(scenario, level)
        if level_digest is not None:
            out[f"level:{level}"] = level_digest
        out[f"policy:{level}"] = policy_sha256(scenario, level)
        for method in scenario.methods:
            for attr in METHOD_POLICY_ATTRS:
                mp = scenario.method_policy_path(method, level, attr)
                if mp is not None:
                    out[f"method:{method.label}.{attr}:{level}"] = file_sha256(mp)
    for setup in scenario.setups:
        tp = scenario.trace_path(setup)
        if tp is not None:
            out[f"trace:{setup.name}"] = file_sha256(tp)
    return out


def config_hash(scenario: Scenario) -> str:
    """Hash of the whole scenario and its files: equal hashes mean identical results."""
    return sha({"scenario": json.loads(canonical_json(scenario)), "files": file_digests(scenario),
                "schedule_version": schedule_version()})


def comparability_key(scenario: Scenario) -> str:
    """`config_hash` without seeds, rollouts and description: equal keys measure the same thing."""
    return sha({"scenario": json.loads(canonical_json(scenario, exclude_run=True)), "files": file_digests(scenario),
                "schedule_version": schedule_version()})


def cell_material(scenario: Scenario, cell: Cell) -> dict[str, Any]:
    """What one cell measures, as the data its hashes cover (no seeds, no rollouts, no scenario name)."""
    files = {"policy": policy_sha256(scenario, cell.level)}
    level_digest = level_file_sha256(scenario, cell.level)
    if level_digest is not None:
        files["level"] = level_digest
    for attr in METHOD_POLICY_ATTRS:
        mp = scenario.method_policy_path(cell.method, cell.level, attr)
        if mp is not None:
            files[f"method.{attr}"] = file_sha256(mp)
    tp = scenario.trace_path(cell.setup)
    if tp is not None:
        files["trace"] = file_sha256(tp)
    return {
        "schema_version": scenario.schema_version,
        "schedule_version": schedule_version(),  # how delays are drawn (rtcbench.replay.tail)
        "level": cell.level,
        "method": cell.method.model_dump(mode="json"),
        "setup": cell.setup.model_dump(mode="json"),
        "dt_ms": scenario.dt_ms,
        "H": scenario.H,
        "flow_steps": scenario.flow_steps,
        "max_steps": scenario.max_steps,
        "fallback": scenario.fallback,
        "files": files,
    }


def cell_comparability_key(scenario: Scenario, cell: Cell) -> str:
    """What a cell measures: level, method, setup, H, flow_steps, dt_ms, max_steps, fallback, and the
    policy / trace / level file hashes. Leaves out seeds, rollouts and the scenario's name."""
    return sha(cell_material(scenario, cell))


def cell_config_hash(scenario: Scenario, cell: Cell) -> str:
    """`cell_comparability_key` plus seeds and rollouts: equal hashes mean identical results."""
    material = cell_material(scenario, cell)
    material["seeds"] = scenario.seeds.model_dump(mode="json")
    material["rollouts"] = scenario.rollouts
    return sha(material)
