"""`rtcbench publish`: the whole site, written beside --out and renamed into place.

Layout (every link relative, so the folder works from ``file://`` and from any static web server)::

    index.html                    the runs, newest first, and the scenarios
    runs/RUN_ID/index.html        one page per run, with its figures (PNG + SVG) and videos/ beside it
    scenarios/SCENARIO.html       one page per scenario name: each cell's history across runs
    scenarios/SCENARIO/*.png|svg  the history charts, one per level
    publish.json                  what was published: the file, its schema version, the runs and pages

The site is built in a hidden temporary folder next to --out and renamed to --out when complete, so a
reader never sees half a site and a failed build leaves the old one as it was. An existing --out is replaced
only with ``--force``, and only when it is a site this command wrote (it holds ``publish.json``); an empty
folder is simply filled.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from rtcbench.errors import UserError
from rtcbench.publish.data import SiteData, load_site_data
from rtcbench.publish.history import scenario_levels
from rtcbench.publish.html import Cell, Table, commit_text, environment, file_slug, href, render, text
from rtcbench.publish.run_page import run_summary, write_run_page

MANIFEST = "publish.json"


@dataclass(frozen=True)
class Published:
    """What a publish wrote: the site folder, its index page, and how many run and scenario pages."""

    out: Path
    index: Path
    n_runs: int
    n_scenarios: int


def run_page_path(run_id: str) -> tuple[str, str]:
    """(folder, file) of a run's page relative to the site's top folder."""
    return f"runs/{file_slug(run_id)}", "index.html"


def scenario_page_path(scenario: str) -> tuple[str, str]:
    """(folder of its charts, page file) of a scenario's page, relative to the ``scenarios`` folder."""
    slug = file_slug(scenario)
    return slug, f"{slug}.html"


def check_out(out: Path, force: bool) -> None:
    """Refuse an --out that is a file, a non-empty folder without --force, a folder that --force would replace
    although this command did not write it (no ``publish.json``), or the folder this command runs in (or one
    above it)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError("exists and is not a directory", path=str(out), field="--out")
    if not any(out.iterdir()):
        return
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise UserError("is the current folder or a folder above it; give the site a folder of its own",
                        path=str(out), field="--out")
    if not force:
        raise UserError("already exists; give --force to replace the site in it, or a new path", path=str(out),
                        field="--out")
    if not (out / MANIFEST).is_file():
        raise UserError(f"is a non-empty folder that `rtcbench publish` did not write (no {MANIFEST}); --force "
                        "replaces only such a site: give a new path", path=str(out), field="--out")


def _runs_table(data: SiteData, root: str) -> Table:
    """The index's table: one row per run, newest first, linking the run's and its scenario's pages."""
    table = Table(["run", "scenario", "version", "started (UTC)", "commit", "rollouts", "cells", "status"])
    for _, run in data.runs.sort_values(["started_at", "run_id"], ascending=False).iterrows():
        summary = run_summary(run, data.run_cells(run["run_id"]))
        folder, page = run_page_path(run["run_id"])
        _, scenario_page = scenario_page_path(run["scenario"])
        table.rows.append([Cell(summary["run_id"], root + href(*folder.split("/"), page)),
                           Cell(summary["scenario"], root + href("scenarios", scenario_page)),
                           Cell(summary["version"]), Cell(summary["started"]), Cell(summary["commit"]),
                           Cell(summary["rollouts"]), Cell(summary["cells"]),
                           Cell(summary["status"], css=f"status-{summary['status']}")])
    return table


def _scenarios_table(data: SiteData) -> Table:
    """The index's scenarios: each links its history page, with its runs, versions and newest run."""
    table = Table(["scenario", "runs", "versions", "newest run", "newest commit"])
    for scenario in data.scenarios():
        runs = data.runs[data.runs["scenario"] == scenario].sort_values(["started_at", "run_id"])
        newest = runs.iloc[-1]
        versions = ", ".join(dict.fromkeys(text(v) for v in runs["scenario_version"]))
        table.rows.append([Cell(scenario, href("scenarios", scenario_page_path(scenario)[1])), Cell(str(len(runs))),
                           Cell(versions), Cell(text(newest["started_at"])),
                           Cell(commit_text(newest["git_commit"], newest["git_dirty"]))])
    return table


def _write_scenario_page(env: jinja2.Environment, data: SiteData, scenario: str, site: Path) -> str:
    """Render one scenario's history page (and its charts) -> its path relative to the site."""
    folder, page = scenario_page_path(scenario)
    runs = data.runs[data.runs["scenario"] == scenario]
    cells = data.cells[data.cells["run_id"].isin(set(runs["run_id"]))]

    def run_href(run_id: str) -> str:
        run_folder, run_page = run_page_path(run_id)
        return "../" + href(*run_folder.split("/"), run_page)

    levels = scenario_levels(runs, cells, site / "scenarios" / folder, run_href)
    render(env, "scenario.html", site / "scenarios" / page, root="../", title=f"scenario {scenario}",
           scenario=scenario, n_runs=len(runs), levels=levels)
    return f"scenarios/{page}"


def build_site(data: SiteData, site: Path, videos_dir: Path | None) -> dict:
    """Write every page of the site into the folder `site` -> the manifest (also written as ``publish.json``)."""
    from rtcbench import __version__

    env = environment()
    run_pages = {}
    for _, run in data.runs.iterrows():
        folder, page = run_page_path(run["run_id"])
        _, scenario_page = scenario_page_path(run["scenario"])
        write_run_page(env, run, data.run_cells(run["run_id"]), data.report_rows[run["run_id"]],
                       site / folder / page, root="../../", scenario_href="../../" + href("scenarios", scenario_page),
                       videos_dir=videos_dir)
        run_pages[str(run["run_id"])] = f"{folder}/{page}"
    scenario_pages = {scenario: _write_scenario_page(env, data, scenario, site) for scenario in data.scenarios()}
    render(env, "index.html", site / "index.html", root="", title="rtcbench results", db_name=data.db_path.name,
           runs=_runs_table(data, ""), scenarios=_scenarios_table(data), n_runs=len(data.runs))
    manifest = {"db": str(data.db_path), "schema_version": data.schema_version, "rtcbench_version": __version__,
                "runs": run_pages, "scenarios": scenario_pages}
    (site / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _swap_into_place(built: Path, out: Path, force: bool) -> None:
    """Rename the finished folder `built` to `out`; an existing site is moved aside first and removed after,
    and put back should the rename fail."""
    check_out(out, force)  # again: something may have appeared at --out while the site was built
    if not out.exists():
        os.replace(built, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(built, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def publish_site(db_path: Path, out: Path, *, force: bool = False, runs: list[str] | None = None,
                 videos_dir: Path | None = None) -> Published:
    """Publish the runs of a results file (every run, or those named in `runs`) as a static site at `out`."""
    check_out(out, force)
    if db_path.resolve().is_relative_to(out.resolve()):
        raise UserError(f"holds the results file {db_path}; the site replaces this folder, give another one",
                        path=str(out), field="--out")
    if videos_dir is not None and not videos_dir.is_dir():
        raise UserError("is not a folder (give the folder `rtcbench render` wrote its videos to)",
                        path=str(videos_dir), field="--videos")
    data = load_site_data(db_path, runs)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # a folder of the usual permissions (mkdtemp's would be private, and stay so after the rename)
        building = parent / f".{out.name}.publish-{os.getpid()}-{secrets.token_hex(4)}"
        building.mkdir()
    except OSError as exc:
        raise UserError(f"cannot create a folder beside it: {exc}", path=str(out), field="--out") from None
    try:
        build_site(data, building, videos_dir)
        _swap_into_place(building, out, force)
    except OSError as exc:
        raise UserError(f"cannot write the site: {exc}", path=str(out), field="--out") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return Published(out, out / "index.html", len(data.runs), len(data.scenarios()))

