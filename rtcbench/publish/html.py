"""The HTML side of `rtcbench publish`: the Jinja2 templates (package data under ``templates/``), table cells
and the file names the site uses.

A table handed to a template is a `Table`: column titles and rows of `Cell` (a text, an optional relative
link, an optional CSS class), so every template draws every table with one macro and links stay relative.
Jinja2 escapes every value (autoescape), so a scenario name or an error text can never break the page.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
import pandas as pd

from rtcbench.tables import MISSING, fmt, is_missing

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# The characters a file name of the site keeps as they are; anything else becomes '_' (and the name gets a hash).
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, a relative link (or None) and a CSS class (or "")."""

    text: str
    href: str | None = None
    css: str = ""


@dataclass
class Table:
    """Column titles and rows of cells, in the order shown."""

    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


def environment() -> jinja2.Environment:
    """The templates, autoescaped, failing on an undefined name (a typo in a template is an error, not a blank)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def render(env: jinja2.Environment, template: str, out: Path, **context) -> Path:
    """Render `template` with `context` into the file `out` (UTF-8) -> `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(env.get_template(template).render(**context), encoding="utf-8")
    return out


def file_slug(text: str) -> str:
    """A file-name part for `text` that is safe on every file system and in a URL: the text itself when it
    holds only letters, digits and ``._-`` (a run id), else its safe characters and a short hash, so two
    names that differ only in unsafe characters never share a file."""
    safe = _UNSAFE.sub("_", str(text)).strip("._")
    if safe == text and safe:
        return safe
    digest = hashlib.sha1(str(text).encode()).hexdigest()[:8]
    return f"{safe}-{digest}" if safe else digest


def href(*parts: str) -> str:
    """A relative URL from path parts (each percent-quoted), joined with '/'."""
    return "/".join(quote(p) for p in parts)


def text(value) -> str:
    """A stored value as page text: numbers by `rtcbench.tables.fmt`, times to the second (UTC, as stored)."""
    if is_missing(value):
        return MISSING
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return fmt(value)


def commit_text(commit, dirty) -> str:
    """A git commit, shortened to 12 characters, with ``+dirty`` when the working tree had changes."""
    if is_missing(commit):
        return MISSING
    mark = "+dirty" if not is_missing(dirty) and bool(dirty) else ""
    return f"{str(commit)[:12]}{mark}"
