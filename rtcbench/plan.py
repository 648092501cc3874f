"""The plan of a run: every per-cell fact resolved once, before any rollout runs.

    scenario YAML (+ --set, --rollouts, --only)
      -> Scenario (validated model)                              rtcbench.scenario
      -> RunPlan: engine parameters + one PreparedCell per cell  this module
           PreparedCell = cell (level, method, setup), its Level, its checkpoint(s), its Schedule,
                          its config hash and comparability key
      -> executor (local or Ray) -> engine                       rtcbench.executors, rtcbench.engine

Everything downstream of the plan (the executors, the engine, the row builder) reads a `RunPlan` and
nothing else: it never imports `rtcbench.scenario` or the runner (an import contract in pyproject.toml
checks this). A Ray worker rebuilds the same plan from the same files with `plan_from_file` and checks
each cell's config hash against the driver's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from rtcbench.errors import UserError

if TYPE_CHECKING:
    from rtcbench.levels import Level
    from rtcbench.methods.config import MethodConfig
    from rtcbench.policy.checkpoint import LoadedPolicy
    from rtcbench.replay.schedule import Schedule
    from rtcbench.replay.setup import DelaySetup
    from rtcbench.scenario import Cell, Scenario

CellKey = tuple[str, str, str]  # (level, method label, setup name)
CellFilter = Callable[["Cell"], bool]
ONLY_KEYS = ("level", "method", "setup")


@dataclass
class PreparedCell:
    """One cell with everything the engine and the store need, resolved."""

    cell: Cell
    level: Level
    policy: LoadedPolicy  # the method's own checkpoint (ttrtc) or the scenario's
    weak_policy: LoadedPolicy | None  # BID's weak policy, if any
    schedule: Schedule
    config_hash: str
    comparability_key: str

    @property
    def key(self) -> CellKey:
        return self.cell.key

    @property
    def method(self) -> MethodConfig:
        return self.cell.method

    @property
    def setup(self) -> DelaySetup:
        return self.cell.setup


@dataclass(frozen=True)
class EngineParams:
    """The scenario's run-wide settings that the engine and the cell rows use."""

    H: int
    flow_steps: int
    dt_ms: float
    max_steps: int
    rollouts: int
    fallback: str
    env_seed: int
    policy_seed: int
    seeds: dict  # {"delay", "env", "policy"}, as recorded in each cell's cell_config


@dataclass
class RunPlan:
    """A whole run, resolved: what `rtcbench run` executes and records."""

    scenario_name: str
    scenario_version: str
    config_hash: str
    comparability_key: str
    engine: EngineParams
    cells: list[PreparedCell] = field(default_factory=list)

    def todo(self, done: set[CellKey]) -> list[PreparedCell]:
        """The cells whose key is not in `done` (cells a resumed run already holds), in plan order."""
        return [p for p in self.cells if p.key not in done]


@dataclass
class LoadedInputs:
    """Every level and checkpoint a scenario names, loaded and verified once."""

    levels: dict[str, Level]  # level name -> Level
    policies: dict[Path, LoadedPolicy]  # checkpoint path -> LoadedPolicy

    def policy_for(self, scenario: Scenario, cell: Cell, attr: str = "policy") -> LoadedPolicy | None:
        """The checkpoint a cell runs (`attr="policy"`: the method's own, else the scenario's) or its BID
        weak policy (`attr="weak_policy"`, None when the method has none)."""
        path = scenario.method_policy_path(cell.method, cell.level, attr)
        if path is None:
            if attr != "policy":
                return None
            path = scenario.policy_path(cell.level)
        return self.policies[path]


def load_inputs(scenario: Scenario) -> LoadedInputs:
    """Load every level and checkpoint the scenario names and check them against each other: the level
    file parses, each checkpoint's sha256 matches its sidecar, its dims match the level and its H the
    scenario's. A problem is a UserError naming the scenario and its field (``levels[i]``, ``policy``,
    ``methods[i].policy``, ``methods[i].weak_policy``). Used by `rtcbench validate` and before a run."""
    from rtcbench.levels import load_level_or_user_error
    from rtcbench.policy.checkpoint import load_policy

    where = str(scenario.path) if scenario.path else "<scenario>"
    levels, policies = {}, {}
    for i, level in enumerate(scenario.levels):
        levels[level] = load_level_or_user_error(scenario.resolve_level(level), path=where, field=f"levels[{i}]")

    def check(path: Path, level: str, field: str) -> None:
        if path in policies:
            return
        try:
            loaded = load_policy(path, levels[level])
        except UserError as exc:
            raise UserError(f"checkpoint for level {level!r}: {exc}", path=where, field=field) from None
        if loaded.config.H != scenario.H:
            raise UserError(f"checkpoint {path} was trained with H={loaded.config.H} but the scenario sets "
                            f"H={scenario.H}", path=where, field=field)
        policies[path] = loaded

    for level in scenario.levels:
        check(scenario.policy_path(level), level, "policy")
        for i, method in enumerate(scenario.methods):
            for attr in ("policy", "weak_policy"):
                path = scenario.method_policy_path(method, level, attr)
                if path is not None:
                    check(path, level, f"methods[{i}].{attr}")
    return LoadedInputs(levels, policies)


def engine_params(scenario: Scenario) -> EngineParams:
    seeds = scenario.seeds.model_dump(mode="json")
    return EngineParams(H=scenario.H, flow_steps=scenario.flow_steps, dt_ms=scenario.dt_ms,
                        max_steps=scenario.max_steps, rollouts=scenario.rollouts, fallback=scenario.fallback,
                        env_seed=scenario.seeds.env, policy_seed=scenario.seeds.policy, seeds=seeds)


def build_plan(scenario: Scenario, select: CellFilter | None = None) -> RunPlan:
    """Load levels and policies and build schedules for every cell (or the cells `select(cell)` keeps);
    raises UserError on bad input. Cells sharing a setup (and a world model: `sync` pauses the world)
    share one Schedule object."""
    inputs = load_inputs(scenario)
    schedules: dict[tuple[str, bool], Schedule] = {}
    cells = []
    for cell in scenario.cells():
        if select is not None and not select(cell):
            continue
        world_pauses = cell.method.kind == "sync"
        sched_key = (cell.setup.name, world_pauses)
        if sched_key not in schedules:
            schedules[sched_key] = scenario.build_schedule(cell.setup, world_pauses=world_pauses)
        cells.append(PreparedCell(cell, inputs.levels[cell.level], inputs.policy_for(scenario, cell),
                                  inputs.policy_for(scenario, cell, "weak_policy"), schedules[sched_key],
                                  scenario.cell_config_hash(cell), scenario.cell_comparability_key(cell)))
    return RunPlan(scenario.name, str(scenario.version), scenario.config_hash, scenario.comparability_key,
                   engine_params(scenario), cells)


def load_scenario(path: str | Path, *, sets: list[str] | None = None, rollouts: int | None = None) -> Scenario:
    """The scenario file with its ``--set`` overrides and ``--rollouts`` applied, validated."""
    from rtcbench.scenario import Scenario

    scenario = Scenario.from_yaml(path, sets=sets)
    return scenario.with_overrides(rollouts=rollouts) if rollouts is not None else scenario


def plan_from_file(path: str | Path, *, sets: list[str] | None = None, rollouts: int | None = None,
                   only: str | None = None) -> RunPlan:
    """What a Ray worker (or any second process) rebuilds from the driver's arguments: the same plan."""
    scenario = load_scenario(path, sets=sets, rollouts=rollouts)
    return build_plan(scenario, parse_only(only, scenario) if only else None)


def parse_only(text: str, scenario: Scenario) -> CellFilter:
    """``--only level=L,method=M,setup=S`` -> a predicate on cells. Each value is an exact name or a
    shell pattern (``method=rtc*``); a key given twice keeps cells matching either value; keys combine
    with AND. A value matching nothing in the scenario is an error naming what exists."""
    wanted: dict[str, list[str]] = {}
    for part in (p.strip() for p in text.split(",")):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in ONLY_KEYS or not value:
            raise UserError(f"expected comma-separated KEY=VALUE with KEY one of {', '.join(ONLY_KEYS)}, got "
                            f"{part!r}", field="--only")
        wanted.setdefault(key, []).append(value)
    names = {"level": list(scenario.levels), "method": [m.label for m in scenario.methods],
             "setup": [s.name for s in scenario.setups]}
    for key, values in wanted.items():
        for value in values:
            if not any(fnmatchcase(name, value) for name in names[key]):
                raise UserError(f"{key} {value!r} matches nothing in scenario {scenario.name}; it has: "
                                f"{', '.join(names[key])}", field="--only")

    def select(cell: Cell) -> bool:
        have = {"level": cell.level, "method": cell.method.label, "setup": cell.setup.name}
        return all(any(fnmatchcase(have[k], v) for v in vs) for k, vs in wanted.items())

    return select
