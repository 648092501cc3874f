"""Scenario: a versioned YAML file that fixes everything a benchmark run depends on.

    schema_version: 1
    name: longtail_5pct
    version: 1                              # content version of this scenario
    description: 5% delay spikes on top of 1-3 step delays
    levels: [s/h8_unicycle_balance]         # kinetix-env built-ins, project levels (rtc/<name>) or level
                                            # JSON paths, each optionally with ':packed' (rtcbench.levels:
                                            # same physics, smaller arrays)
    policy: ../../policies/{level}/bc.msgpack
    methods: [{kind: naive}, {kind: rtc}]   # rtcbench.methods.config.MethodConfig
    setups:                                 # rtcbench.replay.setup.DelaySetup
      - {name: wmax, profile: {...}, tail: [...], forecaster: {...}, horizon: {...}}
    dt_ms: 33.3
    H: 8
    flow_steps: 5
    rollouts: 256
    max_steps: 256
    seeds: {delay: 0, env: 0, policy: 0}
    fallback: hold                          # hold | zero

Relative paths (policy checkpoints, traces, level JSONs) resolve against the scenario file's directory;
``{level}`` in a checkpoint path becomes the level's slug (``s/h4_thrust_aim`` -> ``s_h4_thrust_aim``).

Hashes (sha256, hex):
- ``config_hash``: canonical JSON of the validated scenario (defaults filled in) + the content sha256
  of every referenced trace, policy checkpoint and level JSON (a user path or a project ``rtc/`` level;
  kinetix-env built-ins are pinned by the kinetix-env version in each run's provenance).
- ``comparability_key``: the same without seeds, rollouts and description: runs with equal keys measure
  the same thing and may be compared or pooled.
- per cell (level x method x setup): ``cell_config_hash`` and ``cell_comparability_key`` cover only what
  that cell depends on, so the store can pair a cell across scenarios and runs.

This module imports no JAX (``rtcbench schedule`` must stay physics-free).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rtcbench.errors import NESTED_TOO_DEEPLY, UserError
from rtcbench.hashing import file_sha256
from rtcbench.levels import PACKED_SUFFIX, known_levels, level_slug, project_level_file, split_packed
from rtcbench.methods.config import MethodConfig
from rtcbench.replay.base import StrictModel
from rtcbench.replay.horizon import AdaptiveHorizon, FixedClockHorizon
from rtcbench.replay.setup import DelaySetup
from rtcbench.replay.tail import SCHEDULE_VERSION

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
    method: Any  # a MethodConfig
    setup: DelaySetup

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.level, self.method.label, self.setup.name)


def _is_level_path(level: str) -> bool:
    return split_packed(level)[0].endswith(".json")


def _level_file(level: str) -> str:
    """A level JSON path without its ``:packed`` suffix."""
    return split_packed(level)[0]


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha(obj) -> str:
    return hashlib.sha256(_canonical(obj).encode("utf-8")).hexdigest()


def _field_error(message: str, field: str) -> PydanticCustomError:
    return PydanticCustomError("rtcbench_field", "{message}", {"message": message, "field": field})


class Scenario(StrictModel):
    """A validated scenario. Build it with `Scenario.from_yaml`; see the module docstring for the format."""

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
    def _cross_checks(self):
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
        return self

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_yaml(cls, path: str | Path, *, check_policies: bool = True, sets: list[str] | None = None) -> Scenario:
        """Load with safe YAML and validate. Every problem is a `UserError` naming the file and field.

        ``check_policies=False`` skips the checkpoint files (``rtcbench schedule`` needs no policy);
        hashes then cannot be computed. ``sets``: ``rtcbench run --set PATH=VALUE`` overrides, applied to
        the parsed YAML before validation (`apply_sets`), so the result is what the edited file would give.
        """
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise UserError("scenario file not found", path=where)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError("is not UTF-8 text; a scenario is a YAML file", path=where) from None
        if not text.strip():
            raise UserError("is empty; a scenario is a YAML mapping (see bench/scenarios/ for examples)", path=where)
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise UserError(f"YAML syntax error{at}: {problem}", path=where) from None
        except RecursionError:
            raise UserError(NESTED_TOO_DEEPLY + "; a scenario is a YAML mapping a few levels deep", path=where) from None
        if data is None:
            raise UserError("is empty; a scenario is a YAML mapping (see bench/scenarios/ for examples)", path=where)
        if sets:
            data = apply_sets(data, sets, where)
            where_set = where + " (with --set " + " --set ".join(sets) + ")"
            try:
                return cls.from_dict(data, path=path, check_policies=check_policies)
            except UserError as exc:  # say that the value may come from the command line, not from the file
                if exc.path != where:
                    raise
                raise type(exc)(exc.message, path=where_set, field=exc.field) from None
        return cls.from_dict(data, path=path, check_policies=check_policies)

    @classmethod
    def from_dict(
        cls, data: Any, *, path: str | Path | None = None, base_dir: str | Path | None = None, check_policies: bool = True
    ) -> Scenario:
        """Validate a parsed scenario; relative paths resolve against ``base_dir`` (default: the file's folder)."""
        where = str(path) if path is not None else "<scenario>"
        if not isinstance(data, dict):
            raise UserError(f"must be a YAML mapping of scenario fields, got {type(data).__name__}", path=where)
        try:
            scenario = cls.model_validate(data)
        except ValidationError as exc:
            raise _user_error(exc, where) from None
        scenario._path = Path(path) if path is not None else None
        if base_dir is not None:
            scenario._base_dir = Path(base_dir)
        elif path is not None:
            scenario._base_dir = Path(path).resolve().parent
        scenario.check_files(check_policies=check_policies)
        return scenario

    def check_files(self, *, check_policies: bool = True) -> None:
        """Every level, trace and (optionally) policy the scenario names must exist and be valid."""
        from rtcbench.replay.traces import read_trace

        where = str(self._path) if self._path else "<scenario>"
        named_levels = None
        for i, level in enumerate(self.levels):
            if _is_level_path(level):
                if not self._resolve(_level_file(level)).is_file():
                    raise UserError(
                        f"level JSON {self._resolve(_level_file(level))} does not exist (relative paths resolve against the "
                        "scenario's directory)",
                        path=where,
                        field=f"levels[{i}]",
                    )
                continue
            if named_levels is None:
                named_levels = set(known_levels())
            if split_packed(level)[0] not in named_levels:
                close = difflib.get_close_matches(split_packed(level)[0], sorted(named_levels), n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise UserError(
                    f"unknown level {level!r}; allowed: a kinetix-env built-in such as 's/h4_thrust_aim', a "
                    f"project level 'rtc/<name>' (see `rtcbench levels`) or a path to a level .json file, each "
                    f"optionally with the suffix '{PACKED_SUFFIX}'.{hint}",
                    path=where,
                    field=f"levels[{i}]",
                )
        for i, setup in enumerate(self.setups):
            if setup.profile.kind == "trace":
                trace_path = setup.profile.resolve(self._base_dir)
                if not trace_path.is_file():
                    raise UserError(
                        f"trace file {trace_path} does not exist (relative paths resolve against the scenario's directory)",
                        path=where,
                        field=f"setups[{i}].profile.path",
                    )
                try:
                    read_trace(trace_path)
                except UserError as exc:
                    raise UserError(f"invalid trace: {exc}", path=where, field=f"setups[{i}].profile.path") from None
        if not check_policies:
            return
        for level in self.levels:
            p = self.policy_path(level)
            if not p.is_file():
                raise UserError(
                    f"policy checkpoint {p} does not exist for level {level!r} ('{{level}}' becomes "
                    f"{level_slug(level)!r}; relative paths resolve against the scenario's directory)",
                    path=where,
                    field="policy",
                )
            for i, method in enumerate(self.methods):
                for attr in ("policy", "weak_policy"):
                    mp = self.method_policy_path(method, level, attr)
                    if mp is not None and not mp.is_file():
                        raise UserError(
                            f"checkpoint {mp} does not exist for level {level!r}",
                            path=where,
                            field=f"methods[{i}].{attr}",
                        )

    # ------------------------------------------------------------------------------------------ paths

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the scenario resolve against."""
        return self._base_dir

    def _resolve(self, rel: str, level: str | None = None) -> Path:
        if level is not None:
            rel = rel.replace("{level}", level_slug(level))
        p = Path(rel)
        return p if p.is_absolute() else Path(os.path.normpath(self._base_dir / p))

    def policy_path(self, level: str) -> Path:
        """The scenario's checkpoint for a level, ``{level}`` substituted and resolved."""
        return self._resolve(self.policy, level)

    def method_policy_path(self, method, level: str, attr: str = "policy") -> Path | None:
        """A method's own checkpoint (``policy``, required for ttrtc; or ``bid.weak_policy`` with
        attr='weak_policy'), if any."""
        rel = getattr(method, attr, None)
        return None if rel is None else self._resolve(rel, level)

    def resolve_level(self, level: str) -> str:
        """What `rtcbench.levels.load_level` takes: the built-in name, or the absolute JSON path."""
        if not _is_level_path(level):
            return level
        base, packed = split_packed(level)
        return str(self._resolve(base).resolve()) + (PACKED_SUFFIX if packed else "")

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

    def build_schedule(self, setup: DelaySetup, *, world_pauses: bool = False):
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

    def with_overrides(self, **updates) -> Scenario:
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
        try:
            out = type(self).model_validate(data)
        except ValidationError as exc:
            raise _user_error(exc, where + " (with overrides)") from None
        out._path, out._base_dir = self._path, self._base_dir
        return out

    # ------------------------------------------------------------------------------------------ hashes

    def canonical_json(self, *, exclude_run: bool = False) -> str:
        """Canonical JSON of the validated scenario; ``exclude_run`` leaves out seeds, rollouts, description."""
        data = self.model_dump(mode="json")
        if exclude_run:
            for key in ("seeds", "rollouts", "description"):
                data.pop(key)
        return _canonical(data)

    def file_digests(self) -> dict[str, str]:
        """sha256 of every file the scenario's results depend on, keyed by role (needs the policies)."""
        out: dict[str, str] = {}
        for level in self.levels:
            level_digest = self._level_file_sha256(level)
            if level_digest is not None:
                out[f"level:{level}"] = level_digest
            out[f"policy:{level}"] = self.policy_sha256(level)
            for method in self.methods:
                for attr in ("policy", "weak_policy"):
                    mp = self.method_policy_path(method, level, attr)
                    if mp is not None:
                        out[f"method:{method.label}.{attr}:{level}"] = file_sha256(mp)
        for setup in self.setups:
            tp = self.trace_path(setup)
            if tp is not None:
                out[f"trace:{setup.name}"] = file_sha256(tp)
        return out

    def _level_file_sha256(self, level: str) -> str | None:
        """sha256 of the level's JSON when rtcbench owns or reads it (a user path or a project ``rtc/`` level,
        which can change between commits); None for a kinetix-env built-in (pinned by the kinetix-env version
        in every run's provenance)."""
        if _is_level_path(level):
            return file_sha256(self._resolve(_level_file(level)))
        project_file = project_level_file(level)
        return None if project_file is None else file_sha256(project_file)

    def policy_sha256(self, level: str) -> str:
        """sha256 of the level's checkpoint bytes (`rtcbench.hashing.file_sha256`, as the checkpoint loader hashes it)."""
        p = self.policy_path(level)
        if not p.is_file():
            raise UserError(f"policy checkpoint {p} does not exist for level {level!r}", path=str(self._path), field="policy")
        return file_sha256(p)

    @property
    def config_hash(self) -> str:
        return _sha({"scenario": json.loads(self.canonical_json()), "files": self.file_digests(),
                     "schedule_version": SCHEDULE_VERSION})

    @property
    def comparability_key(self) -> str:
        return _sha({"scenario": json.loads(self.canonical_json(exclude_run=True)), "files": self.file_digests(),
                     "schedule_version": SCHEDULE_VERSION})

    def _cell_material(self, cell: Cell) -> dict:
        files = {"policy": self.policy_sha256(cell.level)}
        level_digest = self._level_file_sha256(cell.level)
        if level_digest is not None:
            files["level"] = level_digest
        for attr in ("policy", "weak_policy"):
            mp = self.method_policy_path(cell.method, cell.level, attr)
            if mp is not None:
                files[f"method.{attr}"] = file_sha256(mp)
        tp = self.trace_path(cell.setup)
        if tp is not None:
            files["trace"] = file_sha256(tp)
        return {
            "schema_version": self.schema_version,
            "schedule_version": SCHEDULE_VERSION,  # how delays are drawn (rtcbench.replay.tail)
            "level": cell.level,
            "method": cell.method.model_dump(mode="json"),
            "setup": cell.setup.model_dump(mode="json"),
            "dt_ms": self.dt_ms,
            "H": self.H,
            "flow_steps": self.flow_steps,
            "max_steps": self.max_steps,
            "fallback": self.fallback,
            "files": files,
        }

    def cell_comparability_key(self, cell: Cell) -> str:
        """What a cell measures: level, method, setup, H, flow_steps, dt_ms, max_steps, fallback, and the
        policy / trace / level file hashes. Leaves out seeds, rollouts and the scenario's name."""
        return _sha(self._cell_material(cell))

    def cell_config_hash(self, cell: Cell) -> str:
        """`cell_comparability_key` plus seeds and rollouts: equal hashes mean identical results."""
        material = self._cell_material(cell)
        material["seeds"] = self.seeds.model_dump(mode="json")
        material["rollouts"] = self.rollouts
        return _sha(material)


# ---------------------------------------------------------------------------------------------- overrides

_SET_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)")
_SET_INDEX = re.compile(r"\[(-?[0-9]+)\]")


def parse_set(spec: str) -> tuple[list[str | int], Any]:
    """``setups[0].profile.p_spike=0.1`` -> (["setups", 0, "profile", "p_spike"], 0.1).

    The path is dotted field names with ``[i]`` list indices (negative counts from the end); the value
    is read as one YAML value (``0.1`` a number, ``true`` a bool, ``[2, 3]`` a list, ``{kind: fixed, d: 2}``
    a mapping, ``wmax`` text). Malformed input is a `UserError` on field ``--set``."""
    path_text, sep, raw = spec.partition("=")
    path_text = path_text.strip()
    if not sep or not path_text:
        raise UserError(f"expected PATH=VALUE (e.g. rollouts=64 or setups[0].profile.p_spike=0.1), got {spec!r}",
                        field="--set")
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path_text):
        if tokens and path_text[pos] == "[":
            m = _SET_INDEX.match(path_text, pos)
        else:
            m = _SET_NAME.match(path_text, pos + (1 if tokens and path_text[pos] == "." else 0))
            if tokens and path_text[pos] != ".":
                m = None
        if m is None:
            raise UserError(f"cannot read the path {path_text!r} at character {pos + 1}: use field names joined by "
                            "'.' and list indices as [i], e.g. setups[0].profile.p_spike", field="--set")
        tokens.append(m.group(1) if m.re is _SET_NAME else int(m.group(1)))
        pos = m.end()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"cannot read the value of {path_text} as YAML: {getattr(exc, 'problem', exc)}",
                        field="--set") from None
    return tokens, value


def apply_sets(data: dict, sets: list[str], where: str) -> dict:
    """Apply ``--set PATH=VALUE`` overrides (in order) to a parsed scenario mapping; returns a new mapping.

    A missing key of a mapping is added (the model then accepts it or names it as unknown, as it would in
    the file); a list index must exist; a path through a value that is neither is refused."""
    import copy

    data = copy.deepcopy(data)
    for spec in sets:
        tokens, value = parse_set(spec)
        node: Any = data
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            shown = _shown_path(tokens[: i + 1])
            if isinstance(token, int):
                if not isinstance(node, list):
                    raise UserError(f"{_shown_path(tokens[:i]) or 'the scenario'} is not a list, so [{token}] "
                                    f"cannot index it (--set {spec})", path=where, field="--set")
                if not -len(node) <= token < len(node):
                    raise UserError(f"{shown} is out of range: {_shown_path(tokens[:i])} has {len(node)} entries "
                                    f"(--set {spec})", path=where, field="--set")
            elif not isinstance(node, dict):
                raise UserError(f"{_shown_path(tokens[:i])} is not a mapping, so it has no field {token!r} "
                                f"(--set {spec})", path=where, field="--set")
            if last:
                node[token] = value
            else:
                if isinstance(token, str) and token not in node:
                    node[token] = [] if isinstance(tokens[i + 1], int) else {}
                node = node[token]
    return data


def _shown_path(tokens: list[str | int]) -> str:
    out = ""
    for t in tokens:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else t)
    return out


# ---------------------------------------------------------------------------------------------- errors


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (silently keeping the last is a trap)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_annotated(tp):
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_members(tp) -> tuple | None:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return get_args(tp)
    return None


def _walk_loc(loc: tuple) -> tuple[str, type | None]:
    """Pydantic error location -> (display path like ``setups[1].profile.p_spike``, model at the parent).

    Union tags that pydantic puts in the location (``'mixture'``, ``'int'``) are dropped from the path.
    """
    path = ""
    tp: Any = Scenario
    parent_model = Scenario
    for part in loc:
        tp = _strip_annotated(tp)
        members = _union_members(tp)
        if members is not None:
            members = [_strip_annotated(m) for m in members]
            chosen = None
            for m in members:
                if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields:
                    if m.model_fields["kind"].default == part:
                        chosen = m
            if chosen is not None:
                tp = chosen
                continue  # the tag is not part of the user's path
            if isinstance(part, str) and part not in getattr(tp, "model_fields", {}):
                tp = None  # a plain union's member name ('int', "literal['random']"): skip it
                continue
        if isinstance(part, int):
            path += f"[{part}]"
            if tp is not None and get_origin(tp) is list:
                tp = get_args(tp)[0]
            else:
                tp = None
            continue
        path += f".{part}" if path else str(part)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            parent_model = tp
            field = tp.model_fields.get(str(part))
            tp = field.annotation if field is not None else None
        else:
            tp = None
    tp = _strip_annotated(tp) if tp is not None else None
    model_here = tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
    return path, (model_here or parent_model)


def _user_error(exc: ValidationError, where: str) -> UserError:
    """The first validation error as one paragraph: the file, the field path, what is allowed.

    Unknown keys are reported first: a misspelt key also makes the intended key look missing.
    """
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    if err["type"] == "rtcbench_field":
        return UserError(ctx["message"], path=where, field=ctx["field"])
    if err["type"] == "extra_forbidden":
        _, parent = _walk_loc(loc[:-1])
        keys = [k for k in parent.model_fields if k != "kind"] if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        full, _ = _walk_loc(loc)
        return UserError(f"unknown key {loc[-1]!r}{hint}; allowed keys here: {', '.join(keys)}", path=where, field=full)
    path, model = _walk_loc(loc)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "missing":
        msg = "is required but missing"
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown kind {ctx.get('tag')!r}; allowed kinds: {ctx.get('expected_tags')}"
    elif err["type"] == "union_tag_not_found":
        msg = f"needs a 'kind' key; allowed kinds: {_kinds_at(loc)}"
    elif "input" in err and err["type"] not in ("model_type", "list_type", "dict_type", "value_error", "too_short"):
        shown = repr(err["input"])
        if len(shown) <= 60:
            msg += f" (got {shown})"
    more = len(errors) - 1
    if more:
        msg += f" ({more} more error{'s' if more > 1 else ''} after this one)"
    return UserError(msg, path=where, field=path or None)


def _kinds_at(loc: tuple) -> str:
    tp: Any = Scenario
    for part in loc:
        tp = _strip_annotated(tp)
        if isinstance(part, int) and get_origin(tp) is list:
            tp = get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return "?"
    members = _union_members(_strip_annotated(tp)) or ()
    kinds = [m.model_fields["kind"].default for m in map(_strip_annotated, members) if hasattr(m, "model_fields")]
    return ", ".join(map(str, kinds)) or "?"
