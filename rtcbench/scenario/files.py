"""The file checks of a validated scenario: every level, trace and (optionally) policy it names must exist
and be valid, before anything is drawn or written. Each problem is a `UserError` naming the field and
saying what the path is instead of a file (missing, a directory, a device, a symlink loop)."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from rtcbench.errors import UserError
from rtcbench.levels import PACKED_SUFFIX, known_levels, level_slug, split_packed
from rtcbench.scenario.paths import METHOD_POLICY_ATTRS, is_level_path, level_file, not_a_file, resolve_path

if TYPE_CHECKING:
    from rtcbench.scenario.model import Scenario


def check_files(scenario: Scenario, *, check_policies: bool = True) -> None:
    """`Scenario.check_files`: levels, then traces, then (with ``check_policies``) checkpoints."""
    where = str(scenario.path) if scenario.path else "<scenario>"
    _check_levels(scenario, where)
    _check_traces(scenario, where)
    if check_policies:
        _check_policies(scenario, where)


def _check_levels(scenario: Scenario, where: str) -> None:
    """A level JSON path must exist; a level name must be a kinetix-env built-in or a project level."""
    named_levels = None
    for i, level in enumerate(scenario.levels):
        if is_level_path(level):
            json_path = resolve_path(scenario.base_dir, level_file(level))
            if (why := not_a_file(json_path)) is not None:
                raise UserError(
                    f"level JSON {json_path} {why} (relative paths resolve against the scenario's directory)",
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


def _check_traces(scenario: Scenario, where: str) -> None:
    """A trace profile's file must exist and be a valid trace (`rtcbench.replay.traces.read_trace`)."""
    from rtcbench.replay.traces import read_trace

    for i, setup in enumerate(scenario.setups):
        if setup.profile.kind != "trace":
            continue
        trace_path = setup.profile.resolve(scenario.base_dir)
        if (why := not_a_file(trace_path)) is not None:
            raise UserError(
                f"trace file {trace_path} {why} (relative paths resolve against the scenario's directory)",
                path=where,
                field=f"setups[{i}].profile.path",
            )
        try:
            read_trace(trace_path)
        except UserError as exc:
            raise UserError(f"invalid trace: {exc}", path=where, field=f"setups[{i}].profile.path") from None


def _check_policies(scenario: Scenario, where: str) -> None:
    """Each level's checkpoint, and each method's own checkpoints for it, must exist."""
    for level in scenario.levels:
        p = scenario.policy_path(level)
        if (why := not_a_file(p)) is not None:
            raise UserError(
                f"policy checkpoint {p} {why} for level {level!r} ('{{level}}' becomes "
                f"{level_slug(level)!r}; relative paths resolve against the scenario's directory)",
                path=where,
                field="policy",
            )
        for i, method in enumerate(scenario.methods):
            for attr in METHOD_POLICY_ATTRS:
                mp = scenario.method_policy_path(method, level, attr)
                if mp is not None and (why := not_a_file(mp)) is not None:
                    raise UserError(
                        f"checkpoint {mp} {why} for level {level!r}",
                        path=where,
                        field=f"methods[{i}].{attr}",
                    )
