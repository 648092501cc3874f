"""CLI command `publish`: a static HTML site of a results file (index of runs, a page per run, a history
page per scenario), in the spirit of asv's ``publish``; see `rtcbench.publish`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="DuckDB results file (default: $RTCBENCH_DB, else ./rtcbench.duckdb)."),
]


def publish_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the site to: a new or empty one, or a site written before "
                                      "(with --force).")],
    db: DbOption = None,
    run: Annotated[list[str] | None, typer.Option(
        "--run", help="Publish only this run: an id, a unique prefix of one, or latest; repeatable. Default: "
        "every run of the file.")] = None,
    videos: Annotated[Path | None, typer.Option(
        "--videos", help="Folder of videos already rendered by `rtcbench render` (files named RUN_ID_*.gif or "
        ".mp4, its default names); each run's are copied onto its page. Nothing is rendered.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing site at --out (one this command wrote, holding publish.json).")] = False,
) -> None:
    """Write a static HTML site of the runs of a results file: index.html (runs newest first, scenarios), one
    page per run (provenance, cells with Wilson intervals, the report's figures, paired tests against naive)
    and one page per scenario (each cell's solve rate across runs, runs with another comparability key marked
    not comparable). Relative links only: open OUT/index.html, or serve the folder. The site is built beside
    --out and renamed into place when complete."""
    from rtcbench.publish import publish_site
    from rtcbench.store.db import resolve_db_path

    published = publish_site(resolve_db_path(db), out, force=force, runs=run, videos_dir=videos)
    print(f"site of {published.n_runs} run(s) and {published.n_scenarios} scenario(s) written to {published.out} "
          f"(open {published.index})")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app (idempotent: `main()` may run many times in one process)."""
    if not any(info.name == "publish" for info in app.registered_commands):
        app.command("publish")(publish_cmd)
