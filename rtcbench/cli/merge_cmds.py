"""CLI command `merge`: join results files written on several machines into one (`rtcbench.store.merge`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def merge_cmd(
    sources: Annotated[list[Path], typer.Argument(
        metavar="SOURCE", help="Results files to merge (read-only; never modified).")],
    into: Annotated[Path, typer.Option(
        "--into", help="Results file to merge into: created if missing, else migrated and extended.")],
) -> None:
    """Merge results files into one, in one transaction: runs the target lacks are copied with their cells,
    rollouts and inferences; a run already there gains only the cells it lacks; nothing is duplicated, and
    a run id with another config hash is refused."""
    from rtcbench.store.merge import merge_files

    summary = merge_files(sources, into)
    state = "created" if summary.created else (
        f"upgraded from schema version {summary.version_before}" if summary.version_before != summary.version_after
        else "existing")
    print(f"{summary.into} ({state}, schema version {summary.version_after})")
    for src in summary.sources:
        print(f"  {src.path} (schema version {src.version}): {_plural(src.runs_added, 'run')} added, "
              f"{_plural(src.runs_extended, 'run')} extended, {_plural(src.cells_added, 'cell')} added "
              f"({_plural(src.rollouts_added, 'rollout')}, {_plural(src.inferences_added, 'inference')}), "
              f"{_plural(src.cells_skipped, 'cell')} skipped (already there)")
        for note in src.notes:
            print(f"    note: {note}")
    added = sum(s.cells_added for s in summary.sources)
    print(f"{summary.into}: {_plural(summary.runs, 'run')}, {_plural(summary.cells, 'cell')}"
          + ("" if added else "; nothing new"))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("merge")(merge_cmd)
