"""``--set PATH=VALUE``: command-line edits of a parsed scenario, applied before validation.

``rtcbench run --set setups[0].profile.p_spike=0.1`` gives the result the edited file would give: the
edit is made to the parsed YAML mapping and the model then validates it like the file.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from rtcbench.errors import NESTED_TOO_DEEPLY, UserError
from rtcbench.scenario.bounds import check_expanded_size, short_repr, shown_set

_SET_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)")
_SET_INDEX = re.compile(r"\[(-?[0-9]+)\]")


def parse_set(spec: str) -> tuple[list[str | int], Any]:
    """``setups[0].profile.p_spike=0.1`` -> (["setups", 0, "profile", "p_spike"], 0.1).

    The path is dotted field names with ``[i]`` list indices (negative counts from the end); the value
    is read as one YAML value (``0.1`` a number, ``true`` a bool, ``[2, 3]`` a list, ``{kind: fixed, d: 2}``
    a mapping, ``wmax`` text). Malformed input, and a value whose YAML aliases expand to a huge one
    (`rtcbench.scenario.bounds`), is a `UserError` on field ``--set``; messages echo the input cut short."""
    path_text, sep, raw = spec.partition("=")
    path_text = path_text.strip()
    if not sep or not path_text:
        raise UserError(f"expected PATH=VALUE (e.g. rollouts=64 or setups[0].profile.p_spike=0.1), got "
                        f"{short_repr(spec)}", field="--set")
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
            raise UserError(f"cannot read the path {short_repr(path_text)} at character {pos + 1}: use field names joined by "
                            "'.' and list indices as [i], e.g. setups[0].profile.p_spike", field="--set")
        tokens.append(m.group(1) if m.re is _SET_NAME else int(m.group(1)))
        pos = m.end()
    shown = shown_set(path_text)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise UserError(f"cannot read the value of {shown} as YAML: {getattr(exc, 'problem', exc)}",
                        field="--set") from None
    except RecursionError:
        raise UserError(f"the value of {shown} {NESTED_TOO_DEEPLY}", field="--set") from None
    except ValueError as exc:  # a scalar Python cannot hold, e.g. an integer of over 4300 digits
        raise UserError(f"cannot read the value of {shown}: {str(exc).split(';')[0]}", field="--set") from None
    check_expanded_size(value, path=None, field=f"--set {shown}")
    return tokens, value


def apply_sets(data: dict, sets: list[str], where: str) -> dict:
    """Apply ``--set PATH=VALUE`` overrides (in order) to a parsed scenario mapping; returns a new mapping.

    A missing key of a mapping is added (the model then accepts it or names it as unknown, as it would in
    the file); a list index must exist; a path through a value that is neither is refused."""
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
                                    f"cannot index it (--set {shown_set(spec)})", path=where, field="--set")
                if not -len(node) <= token < len(node):
                    raise UserError(f"{shown} is out of range: {_shown_path(tokens[:i])} has {len(node)} entries "
                                    f"(--set {shown_set(spec)})", path=where, field="--set")
            elif not isinstance(node, dict):
                raise UserError(f"{_shown_path(tokens[:i])} is not a mapping, so it has no field {token!r} "
                                f"(--set {shown_set(spec)})", path=where, field="--set")
            if last:
                node[token] = value
            else:
                if isinstance(token, str) and token not in node:
                    node[token] = [] if isinstance(tokens[i + 1], int) else {}
                node = node[token]
    return data


def _shown_path(tokens: list[str | int]) -> str:
    """Path tokens as the user writes them: ``["setups", 0, "profile"]`` -> ``setups[0].profile``."""
    out = ""
    for t in tokens:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else t)
    return out
