"""CLI command `export`: one run of a results file as Parquet files and a manifest, for pandas, polars, R or
any Parquet reader (the same rows `rtcbench.results` returns in Python)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from rtcbench.errors import UserError

MANIFEST = "manifest.json"

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="DuckDB results file (default: $RTCBENCH_DB, else ./rtcbench.duckdb)."),
]


def export_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id, a unique prefix of one, or latest.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the Parquet files and manifest.json into "
                                      "(created if missing; must be empty unless --force).")],
    db: DbOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a non-empty directory, replacing files of the same names.")] = False,
) -> None:
    """Write every table of one run as Parquet: runs (its row), cells, rollouts, inferences and the views
    v_cells, v_rollouts and v_delays restricted to the run, plus manifest.json (run id, schema version, row
    counts, file names, rtcbench version), written last. Each file is written under a temporary name in the
    directory and renamed when complete, so an interrupted export leaves no partial file under a final name."""
    from rtcbench import __version__, results
    from rtcbench.store.db import resolve_db_path

    path = resolve_db_path(db)
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory", path=str(out), field="--out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError("is not empty; give a new or empty directory, or --force to replace the files of the "
                        "same names in it", path=str(out), field="--out")
    with results.open(path) as res:
        run_id = res.run_id(run, field="RUN")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the directory: {exc}", path=str(out), field="--out") from None
        tables = {}
        for name, _ in results.RUN_TABLES:
            file_name = f"{name}.parquet"
            with res.run_table(name, run_id) as reader:
                rows = _write_parquet(reader, out / file_name)
            tables[name] = {"file": file_name, "rows": rows}
        manifest = {"run_id": run_id, "schema_version": res.schema_version, "rtcbench_version": __version__,
                    "db": str(path), "tables": tables}
    _write_atomically(out / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1) + "\n"))
    counts = ", ".join(f"{name} {t['rows']}" for name, t in tables.items())
    print(f"run {run_id} exported to {out} ({counts} rows)")


def _write_parquet(reader, final: Path) -> int:
    """Stream Arrow record batches into a Parquet file at `final` (via a temporary name) -> rows written."""
    import pyarrow.parquet as pq

    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with pq.ParquetWriter(tmp, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows

    _write_atomically(final, write)
    return rows


def _write_atomically(final: Path, write) -> None:
    """Call `write(tmp)` on a hidden temporary name beside `final`, then rename it to `final`; the temporary
    file is removed when writing fails or is interrupted."""
    import pyarrow as pa

    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, final)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"cannot write the file: {exc}", path=str(final), field="--out") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app (idempotent: `main()` may run many times in one process)."""
    if not any(info.name == "export" for info in app.registered_commands):
        app.command("export")(export_cmd)
