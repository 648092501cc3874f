"""Bounds on what a parsed scenario value may hold, and on how much of it an error message echoes.

YAML aliases let a small file describe a huge value: nine lists of nine aliases, nested nine deep (a
"billion laughs" document), parse into a few kilobytes of shared lists that stand for 10^9 strings.
Anything that walks such a value in full (``repr`` in an error message, JSON for a hash) runs for minutes
and ends in MemoryError. So a parsed document is measured first, each use of a shared value counted in
full but each value walked once (`check_expanded_size`), and error messages echo inputs through
`short_repr` and `shown_sets`, which never write more than a few hundred characters.
"""

from __future__ import annotations

import reprlib
from typing import Any

from rtcbench.errors import UserError

# A scenario is a few dozen values; these bounds are far above any real one and far below a bomb.
MAX_EXPANDED_VALUES = 1_000_000
MAX_EXPANDED_CHARS = 50_000_000
# How much of a value, of one --set, and of all --set options an error message shows.
ECHO_CHARS = 60
ECHO_SET_CHARS = 80
ECHO_SETS = 5

_echo = reprlib.Repr()
_echo.maxlevel, _echo.maxlist, _echo.maxtuple, _echo.maxdict, _echo.maxset = 2, 4, 4, 3, 4
_echo.maxstring = _echo.maxlong = _echo.maxother = ECHO_CHARS


def short_repr(value: Any) -> str:
    """``repr(value)`` bounded in time and length (nested and long values are cut with ``...``): an error
    message may echo any input, even one whose aliases expand to billions of values."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"  # str() refuses > 4300
    text = _echo.repr(value)
    return text if len(text) <= 2 * ECHO_CHARS else text[: 2 * ECHO_CHARS - 3] + "..."


def shown_sets(sets: list[str]) -> str:
    """``--set A --set B``, each cut to `ECHO_SET_CHARS` and at most `ECHO_SETS` of them, for a message."""
    shown = " ".join(f"--set {shown_set(s)}" for s in sets[:ECHO_SETS])
    more = len(sets) - ECHO_SETS
    return shown + (f" (and {more:,} more --set options)" if more > 0 else "")


def shown_set(spec: str) -> str:
    """One ``--set PATH=VALUE`` cut to `ECHO_SET_CHARS` for a message, with its full length when cut."""
    if len(spec) <= ECHO_SET_CHARS:
        return spec
    return f"{spec[:ECHO_SET_CHARS]}... ({len(spec):,} characters)"


def check_expanded_size(data: Any, *, path: str | None, field: str | None = None) -> None:
    """Refuse a parsed YAML value that is huge once its aliases are expanded, or that contains itself.

    Counts every scalar and container as often as it is used and the characters of every string, walking
    each shared list or mapping once, so the check takes time in proportion to the file, not to the
    expansion. At the top of a mapping the error names the key that holds the most."""
    sizes = _expanded_sizes(data)
    if sizes is None:
        if field is None and isinstance(data, dict):
            field = next((str(k) for k, v in data.items() if _expanded_sizes(v) is None), None)
        raise UserError("contains a YAML alias (*name) inside the value its anchor (&name) marks: a value that "
                        "contains itself, which no scenario field can hold", path=path, field=field)
    values, chars = _size_of(data, sizes)
    if values <= MAX_EXPANDED_VALUES and chars <= MAX_EXPANDED_CHARS:
        return
    if field is None and isinstance(data, dict) and data:
        field = str(max(data, key=lambda k: _size_of(data[k], sizes)))
    raise UserError(
        f"is too large once its YAML aliases (*name) are expanded: {values:,} values and {chars:,} characters of "
        f"text, where a scenario may hold at most {MAX_EXPANDED_VALUES:,} values and {MAX_EXPANDED_CHARS:,} "
        "characters (a document of nested aliases, such as a 'billion laughs' one, is refused before it is validated)",
        path=path, field=field)


def _children(node: list | dict) -> list:
    return [*node.keys(), *node.values()] if isinstance(node, dict) else list(node)


def _size_of(node: Any, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values, characters) of one value, its containers looked up in ``sizes``."""
    if isinstance(node, (list, dict)):
        return sizes[id(node)]
    return 1, len(node) if isinstance(node, str) else 0


def _expanded_sizes(root: Any) -> dict[int, tuple[int, int]] | None:
    """id of every list and mapping in ``root`` -> its expanded (values, characters); None when a container
    contains itself. Iterative (no recursion limit), each container walked once."""
    sizes: dict[int, tuple[int, int]] = {}
    entered: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (list, dict)) or (not children_done and id(node) in sizes):
            continue
        if children_done:
            values, chars = 1, 0
            for child in _children(node):
                v, c = _size_of(child, sizes)
                values, chars = values + v, chars + c
            sizes[id(node)] = (values, chars)
            continue
        if id(node) in entered:  # entered and not finished: we are inside it
            return None
        entered.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    return sizes
