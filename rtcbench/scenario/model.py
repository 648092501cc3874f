"""The scenario model: its fields, their checks across fields, its cells and the paths it names.

`Scenario` is the validated form of a scenario file (the format is in the package docstring,
`rtcbench.scenario`). Loading, ``--set`` overrides, file checks and hashes live in the package's other
modules; the methods of the same names here call them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rtcbench.errors import UserError
from rtcbench.levels import PACKED_SUFFIX, split_packed
from rtcbench.methods.config import MethodConfig
from rtcbench.replay.base import StrictModel
from rtcbench.replay.horizon import AdaptiveHorizon, FixedClockHorizon
from rtcbench.replay.setup import DelaySetup
from rtcbench.scenario import files, hashing, loading
from rtcbench.scenario.paths import is_level_path, resolve_path

if TYPE_CHECKING:
    from rtcbench.replay.schedule import Schedule

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MAX_SEED = 2**32 - 1
# Peak host bytes of `build_schedule` per (rollout, control step), measured with tracemalloc over every
# setup of the shipped scenarios at 512 x 256 (90-147 bytes; the window-quantile forecaster is the
# largest). A cell holds one schedule at a time; the bound below refuses a scenario whose schedule alone
# would take more than half of this machine's memory, before anything is drawn or written.
SCHEDULE_BYTES_PER_ROLLOUT_STEP = 160


def _physical_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _field_error(message: str, field: str) -> PydanticCustomError:
    """A cross-check's error; `rtcbench.scenario.loading.user_error` reports it with its own message and field."""
    return PydanticCustomError("rtcbench_field", "{message}", {"message": message, "field": field})


class Seeds(StrictModel):
    """Independent seeds, so each dimension can change alone."""

    # Every seed becomes a JAX PRNG key or a numpy SeedSequence entropy word: 32 bits.
    delay: int = Field(default=0, ge=0, le=MAX_SEED, description="delay draws (schedule)")
    env: int = Field(default=0, ge=0, le=MAX_SEED, description="initial state and the 0.1-std action noise")
    policy: int = Field(default=0, ge=0, le=MAX_SEED, description="flow noise")


@dataclass(frozen=True)
class Cell:
    """One result cell: a level, a method and a delay setup."""

    level: str
    method: MethodConfig
    setup: DelaySetup

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.level, self.method.label, self.setup.name)


class Scenario(StrictModel):
    """A validated scenario. Build it with `Scenario.from_yaml`; see the package docstring for the format."""

    schema_version: int = Field(description=f"scenario file format; this rtcbench reads {SUPPORTED_SCHEMA_VERSIONS}")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)
    version: int = Field(default=1, ge=1, description="content version of this scenario")
    description: str = ""
    levels: list[str] = Field(min_length=1, description="kinetix-env built-in names or level JSON paths, "
                              "each optionally with the suffix ':packed'")
    policy: str = Field(min_length=1, description="checkpoint path; may contain {level}")
    methods: list[MethodConfig] = Field(min_length=1)
    setups: list[DelaySetup] = Field(min_length=1)
    dt_ms: float = Field(default=33.3, gt=0, description="wall ms per control step")
    H: int = Field(default=8, ge=1, le=256, description="chunk size")
    flow_steps: int = Field(default=5, ge=1, le=256, description="Euler steps per inference")
    rollouts: int = Field(ge=1, description="rollouts per cell")
    max_steps: int = Field(ge=1, description="control steps per rollout")
    seeds: Seeds = Field(default_factory=Seeds)
    fallback: Literal["hold", "zero"] = "hold"

    _path: Path | None = PrivateAttr(default=None)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"{v} is not supported; this rtcbench reads schema_version {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
            )
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        """Checks across fields, in this order: unique levels and method labels, each setup (unique name,
        horizon within H, a spike threshold where the profile has none), one cell's schedule fits in memory."""
        self._check_unique_levels_and_labels()
        self._check_setups()
        self._check_schedule_fits_memory()
        return self

    def _check_unique_levels_and_labels(self) -> None:
        seen: dict[str, int] = {}
        for i, level in enumerate(self.levels):
            if level in seen:
                raise _field_error(f"level {level!r} is listed twice (also levels[{seen[level]}])", f"levels[{i}]")
            seen[level] = i
        labels: dict[str, int] = {}
        for i, method in enumerate(self.methods):
            if method.label in labels:
                raise _field_error(
                    f"method label {method.label!r} is used twice (also methods[{labels[method.label]}]); "
                    "give one of them a distinct 'name'",
                    f"methods[{i}].name",
                )
            labels[method.label] = i

    def _check_setups(self) -> None:
        names: dict[str, int] = {}
        for i, setup in enumerate(self.setups):
            if setup.name in names:
                raise _field_error(
                    f"setup name {setup.name!r} is used twice (also setups[{names[setup.name]}]); names must be unique",
                    f"setups[{i}].name",
                )
            names[setup.name] = i
            h = setup.horizon
            if isinstance(h, AdaptiveHorizon) and h.s_min > self.H:
                raise _field_error(f"s_min={h.s_min} exceeds H={self.H}; allowed: 1 <= s_min <= H", f"setups[{i}].horizon.s_min")
            if isinstance(h, FixedClockHorizon) and h.s > self.H:
                raise _field_error(f"s={h.s} exceeds H={self.H}; allowed: 1 <= s <= H", f"setups[{i}].horizon.s")
            for j, control in enumerate(setup.tail):
                if control.kind == "drop_spikes" and control.above is None and not setup.profile.has_spikes:
                    raise _field_error(
                        f"drop_spikes needs 'above' (a spike threshold in steps) for a '{setup.profile.kind}' profile; "
                        "only 'mixture' and 'bursty' profiles have a spike component",
                        f"setups[{i}].tail[{j}].above",
                    )

    def _check_schedule_fits_memory(self) -> None:
        need = self.rollouts * self.max_steps * SCHEDULE_BYTES_PER_ROLLOUT_STEP
        have = _physical_memory_bytes()
        if have is not None and need > have // 2:
            field = "rollouts" if self.rollouts >= self.max_steps else "max_steps"
            raise _field_error(
                f"rollouts x max_steps = {self.rollouts:,} x {self.max_steps:,} would need about {need / 2**30:,.1f} GiB "
                f"for one cell's delay schedule alone ({SCHEDULE_BYTES_PER_ROLLOUT_STEP} bytes per rollout-step), "
                f"more than half of this machine's {have / 2**30:,.1f} GiB; lower {field}",
                field,
            )

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_yaml(cls, path: str | Path, *, check_policies: bool = True, sets: list[str] | None = None) -> Scenario:
        """Load with safe YAML and validate. Every problem is a `UserError` naming the file and field.

        ``check_policies=False`` skips the checkpoint files (``rtcbench schedule`` needs no policy);
        hashes then cannot be computed. ``sets``: ``rtcbench run --set PATH=VALUE`` overrides, applied to
        the parsed YAML before validation (`apply_sets`), so the result is what the edited file would give.
        """
        return loading.load_yaml(cls, Path(path), check_policies=check_policies, sets=sets)

    @classmethod
    def from_dict(
        cls, data: Any, *, path: str | Path | None = None, base_dir: str | Path | None = None, check_policies: bool = True
    ) -> Scenario:
        """Validate a parsed scenario; relative paths resolve against ``base_dir`` (default: the file's folder)."""
        where = str(path) if path is not None else "<scenario>"
        scenario = loading.validate_mapping(cls, data, where)
        scenario._path = Path(path) if path is not None else None
        if base_dir is not None:
            scenario._base_dir = Path(base_dir)
        elif path is not None:
            scenario._base_dir = Path(path).resolve().parent
        scenario.check_files(check_policies=check_policies)
        return scenario

    def check_files(self, *, check_policies: bool = True) -> None:
        """Every level, trace and (optionally) policy the scenario names must exist and be valid."""
        files.check_files(self, check_policies=check_policies)

    # ------------------------------------------------------------------------------------------ paths

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the scenario resolve against."""
        return self._base_dir

    def policy_path(self, level: str) -> Path:
        """The scenario's checkpoint for a level, ``{level}`` substituted and resolved."""
        return resolve_path(self._base_dir, self.policy, level)

    def method_policy_path(self, method: MethodConfig, level: str, attr: str = "policy") -> Path | None:
        """A method's own checkpoint (``policy``, required for ttrtc; or ``bid.weak_policy`` with
        attr='weak_policy'), if any."""
        rel = getattr(method, attr, None)
        return None if rel is None else resolve_path(self._base_dir, rel, level)

    def resolve_level(self, level: str) -> str:
        """What `rtcbench.levels.load_level` takes: the built-in name, or the absolute JSON path."""
        if not is_level_path(level):
            return level
        base, packed = split_packed(level)
        return str(resolve_path(self._base_dir, base).resolve()) + (PACKED_SUFFIX if packed else "")

    def trace_path(self, setup: DelaySetup) -> Path | None:
        return setup.profile.resolve(self._base_dir) if setup.profile.kind == "trace" else None

    # ------------------------------------------------------------------------------------------ cells

    def cells(self) -> Iterator[Cell]:
        """All (level, method, setup) cells; for each level and setup, the methods in order (one schedule each)."""
        for level in self.levels:
            for setup in self.setups:
                for method in self.methods:
                    yield Cell(level=level, method=method, setup=setup)

    def setup(self, name: str) -> DelaySetup:
        for s in self.setups:
            if s.name == name:
                return s
        raise UserError(
            f"no setup named {name!r}; this scenario has: {', '.join(s.name for s in self.setups)}",
            path=str(self._path) if self._path else None,
            field="setups",
        )

    def build_schedule(self, setup: DelaySetup, *, world_pauses: bool = False) -> Schedule:
        """The schedule every method of a setup shares (common random numbers)."""
        from rtcbench.replay.schedule import build_schedule

        return build_schedule(
            setup,
            H=self.H,
            dt_ms=self.dt_ms,
            n_rollouts=self.rollouts,
            max_steps=self.max_steps,
            delay_seed=self.seeds.delay,
            base_dir=self._base_dir,
            world_pauses=world_pauses,
        )

    def with_overrides(self, **updates: Any) -> Scenario:
        """A copy with top-level fields replaced (e.g. ``rollouts=64``, ``max_steps=100``,
        ``seeds={'delay': 3}`` (merged into the seeds), ``setups=['wmax']`` / ``methods=['naive']`` /
        ``levels=[...]`` (keep only these, by name or label)), validated like the file.
        """
        data = self.model_dump(mode="python")
        for key, value in updates.items():
            if value is None:
                continue
            if key == "seeds":
                data["seeds"] = {**data["seeds"], **dict(value)}
            elif key == "setups" and all(isinstance(v, str) for v in value):
                data["setups"] = [s.model_dump() for s in (self.setup(n) for n in value)]
            elif key == "methods" and all(isinstance(v, str) for v in value):
                by_label = {m.label: m for m in self.methods}
                missing = [v for v in value if v not in by_label]
                if missing:
                    raise UserError(
                        f"no method labelled {missing[0]!r}; this scenario has: {', '.join(by_label)}",
                        path=str(self._path) if self._path else None,
                        field="methods",
                    )
                data["methods"] = [by_label[v].model_dump() for v in value]
            elif key in type(self).model_fields:
                data[key] = value
            else:
                raise TypeError(f"unknown scenario field {key!r}")
        where = str(self._path) if self._path else "<scenario>"
        out = loading.validate_mapping(type(self), data, where + " (with overrides)")
        out._path, out._base_dir = self._path, self._base_dir
        return out

    # ------------------------------------------------------------------------------------------ hashes
    # The rules are in `rtcbench.scenario.hashing`.

    def canonical_json(self, *, exclude_run: bool = False) -> str:
        """Canonical JSON of the validated scenario; ``exclude_run`` leaves out seeds, rollouts, description."""
        return hashing.canonical_json(self, exclude_run=exclude_run)

    def file_digests(self) -> dict[str, str]:
        """sha256 of every file the scenario's results depend on, keyed by role (needs the policies)."""
        return hashing.file_digests(self)

    def policy_sha256(self, level: str) -> str:
        """sha256 of the level's checkpoint bytes (`rtcbench.hashing.file_sha256`, as the checkpoint loader hashes it)."""
        return hashing.policy_sha256(self, level)

    @property
    def config_hash(self) -> str:
        """sha256 of the scenario (defaults filled in) and of every file it names: equal hashes, identical results."""
        return hashing.config_hash(self)

    @property
    def comparability_key(self) -> str:
        """`config_hash` without seeds, rollouts and description: runs with equal keys may be compared or pooled."""
        return hashing.comparability_key(self)

    def cell_comparability_key(self, cell: Cell) -> str:
        """What a cell measures: level, method, setup, H, flow_steps, dt_ms, max_steps, fallback, and the
        policy / trace / level file hashes. Leaves out seeds, rollouts and the scenario's name."""
        return hashing.cell_comparability_key(self, cell)

    def cell_config_hash(self, cell: Cell) -> str:
        """`cell_comparability_key` plus seeds and rollouts: equal hashes mean identical results."""
        return hashing.cell_config_hash(self, cell)
