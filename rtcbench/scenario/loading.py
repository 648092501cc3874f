"""Reading a scenario file and turning every problem with it into one `UserError`.

The YAML is read safely, a key given twice in one mapping is refused, and so is a document whose aliases
expand to a huge value (`rtcbench.scenario.bounds`). Pydantic's `ValidationError` becomes a one-paragraph
`UserError` that names the file, the field as the user writes it (``setups[1].profile.p_spike``) and what
is allowed there; it echoes the input cut to a few dozen characters.
"""

from __future__ import annotations

import difflib
import re
import types
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from rtcbench.errors import NESTED_TOO_DEEPLY, UserError
from rtcbench.scenario.bounds import ECHO_CHARS, check_expanded_size, short_repr, shown_sets
from rtcbench.scenario.overrides import apply_sets

if TYPE_CHECKING:
    from rtcbench.scenario.model import Scenario

EMPTY_FILE = "is empty; a scenario is a YAML mapping (see bench/scenarios/ for examples)"


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


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a scenario file (not yet validated); a missing, unreadable, empty or malformed
    file is a `UserError` naming the file."""
    where = str(path)
    if not path.is_file():
        raise UserError("scenario file not found", path=where)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError("is not UTF-8 text; a scenario is a YAML file", path=where) from None
    if not text.strip():
        raise UserError(EMPTY_FILE, path=where)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"YAML syntax error{at}: {problem}", path=where) from None
    except RecursionError:
        raise UserError(NESTED_TOO_DEEPLY + "; a scenario is a YAML mapping a few levels deep", path=where) from None
    except ValueError as exc:  # a YAML scalar Python cannot hold, e.g. an integer of over 4300 digits
        raise UserError(f"cannot be read: {str(exc).split(';')[0]}", path=where) from None
    if data is None:
        raise UserError(EMPTY_FILE, path=where)
    check_expanded_size(data, path=where)
    return data


def load_yaml(
    scenario_type: type[Scenario], path: Path, *, check_policies: bool, sets: list[str] | None
) -> Scenario:
    """`Scenario.from_yaml`: read the file, apply the ``--set`` overrides, validate with `Scenario.from_dict`.

    An error in the validated result names the overrides beside the file, since the value may come from
    the command line rather than from the file."""
    where = str(path)
    data = read_yaml(path)
    if not sets:
        return scenario_type.from_dict(data, path=path, check_policies=check_policies)
    data = apply_sets(data, sets, where)
    where_set = f"{where} (with {shown_sets(sets)})"
    check_expanded_size(data, path=where_set)
    try:
        return scenario_type.from_dict(data, path=path, check_policies=check_policies)
    except UserError as exc:
        if exc.path != where:
            raise
        raise type(exc)(exc.message, path=where_set, field=exc.field) from None


def validate_mapping(scenario_type: type[Scenario], data: Any, where: str) -> Scenario:
    """The model validated from a parsed mapping; anything wrong is a `UserError` at ``where``."""
    if not isinstance(data, dict):
        raise UserError(f"must be a YAML mapping of scenario fields, got {type(data).__name__}", path=where)
    try:
        return scenario_type.model_validate(data)
    except ValidationError as exc:
        raise user_error(exc, where, scenario_type) from None


# ---------------------------------------------------------------------------------------------- errors


def user_error(exc: ValidationError, where: str, root: type[BaseModel]) -> UserError:
    """The first validation error of ``root`` as one paragraph: the file, the field path, what is allowed.

    Unknown keys are reported first: a misspelt key also makes the intended key look missing.
    """
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    if err["type"] == "rtcbench_field":  # a cross-check's own message and field (`Scenario._cross_checks`)
        return UserError(ctx["message"], path=where, field=ctx["field"])
    if err["type"] == "extra_forbidden":
        _, parent = _walk_loc(loc[:-1], root)
        keys = [k for k in parent.model_fields if k != "kind"] if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        full, _ = _walk_loc(loc, root)
        return UserError(f"unknown key {short_repr(loc[-1])}{hint}; allowed keys here: {', '.join(keys)}", path=where,
                         field=full if len(full) <= 2 * ECHO_CHARS else None)
    path, _ = _walk_loc(loc, root)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "missing":
        msg = "is required but missing"
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown kind {short_repr(ctx.get('tag'))}; allowed kinds: {ctx.get('expected_tags')}"
    elif err["type"] == "union_tag_not_found":
        msg = f"needs a 'kind' key; allowed kinds: {_kinds_at(loc, root)}"
    elif "input" in err and err["type"] not in ("model_type", "list_type", "dict_type", "value_error", "too_short"):
        shown = short_repr(err["input"])  # bounded: the input may be an alias bomb
        if len(shown) <= ECHO_CHARS:
            msg += f" (got {shown})"
        msg += _float_hint(err)
    more = len(errors) - 1
    if more:
        msg += f" ({more} more error{'s' if more > 1 else ''} after this one)"
    return UserError(msg, path=where, field=path or None)


# A number in exponent notation that YAML 1.1 (PyYAML) reads as text: no dot, or no sign after the 'e'.
_TEXT_FLOAT = re.compile(r"^([-+]?)([0-9]*)(?:\.([0-9]*))?[eE]([-+]?)([0-9]+)$")


def _float_hint(err: dict) -> str:
    """For a number field given text like ``1e308``: how to write it so YAML reads a number (YAML 1.1
    takes exponent notation only with a dot and a signed exponent: ``1.0e+308``)."""
    text = err.get("input")
    if err["type"] not in ("float_type", "int_type") or not isinstance(text, str):
        return ""
    m = _TEXT_FLOAT.match(text.strip())
    if m is None or not (m.group(2) or m.group(3)):
        return ""
    sign, whole, frac, exp_sign, exp = m.groups()
    number = f"{sign}{whole or '0'}.{frac or '0'}e{exp_sign or '+'}{exp}"
    return f"; YAML reads {text.strip()} as text, write {number} for a number"


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> tuple | None:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return get_args(tp)
    return None


def _walk_loc(loc: tuple, root: type[BaseModel]) -> tuple[str, type[BaseModel]]:
    """Pydantic error location -> (display path like ``setups[1].profile.p_spike``, model at the parent).

    Union tags that pydantic puts in the location (``'mixture'``, ``'int'``) are dropped from the path.
    """
    path = ""
    tp: Any = root
    parent_model = root
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


def _kinds_at(loc: tuple, root: type[BaseModel]) -> str:
    """The ``kind`` tags allowed by the tagged union at ``loc`` (``"fixed, lognormal, ..."``), or ``"?"``."""
    tp: Any = root
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
