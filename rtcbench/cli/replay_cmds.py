"""CLI commands of the replay area (being written: see the issue tracker)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
