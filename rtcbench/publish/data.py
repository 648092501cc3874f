"""What `rtcbench publish` reads: everything comes from one results file, read once and released.

The runs and their cells come through `rtcbench.results` (the same frames as the Python API and `rtcbench
export`); the figure inputs of each run are `rtcbench report`'s own queries (`rtcbench.report.run_queries`),
so a run page draws exactly the report's figures. The file's read lock is held only while reading: a
`rtcbench run` writing the same file waits for the reading, never for the drawing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rtcbench.report import run_queries
from rtcbench.results import Results
from rtcbench.store.db import read_only


@dataclass
class SiteData:
    """The runs to publish (oldest first), their cells (`Results.cells`), and per run the report's query rows."""

    db_path: Path
    schema_version: int
    runs: pd.DataFrame
    cells: pd.DataFrame
    report_rows: dict[str, dict[str, pd.DataFrame]]

    def run_cells(self, run_id: str) -> pd.DataFrame:
        """The cells of one run (`Results.cells` columns)."""
        return self.cells[self.cells["run_id"] == run_id].reset_index(drop=True)

    def scenarios(self) -> list[str]:
        """The scenario names of the published runs, in the order their first run started."""
        return list(dict.fromkeys(self.runs["scenario"]))


def load_site_data(db_path: Path, wanted_runs: list[str] | None = None) -> SiteData:
    """Read the runs named in `wanted_runs` (ids, unique prefixes or ``latest``; None: every run of the file)
    with their cells and report rows. A missing file, a file that is not an rtcbench results file, an older
    schema or an unknown run is a `rtcbench.errors.UserError`."""
    with read_only(db_path, require_current=True) as conn:
        res = Results(conn, Path(db_path))
        runs = res.runs()
        if wanted_runs:
            chosen = {res.run_id(run, field="--run") for run in wanted_runs}
            runs = runs[runs["run_id"].isin(chosen)].reset_index(drop=True)
        cells = res.cells()
        cells = cells[cells["run_id"].isin(set(runs["run_id"]))].reset_index(drop=True)
        report_rows = {run_id: run_queries(conn, run_id) for run_id in runs["run_id"]}
        return SiteData(Path(db_path), res.schema_version, runs, cells, report_rows)
