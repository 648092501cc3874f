"""CLI commands of the results store: `run`, `query`, `report`, `compare` and `migrate`.

The database is `--db PATH`, else ``$RTCBENCH_DB``, else ``./rtcbench.duckdb``. JAX is imported only by
`run`, inside the command.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from rtcbench.errors import UserError

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="DuckDB results file (default: $RTCBENCH_DB, else ./rtcbench.duckdb)."),
]


def run_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file, e.g. bench/scenarios/longtail_5pct.yaml.")],
    db: DbOption = None,
    rollouts: Annotated[int | None, typer.Option("--rollouts", help="Override the scenario's rollouts per cell.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | gpu. gpu fails when no GPU is present.")] = "auto",
    resume: Annotated[str | None, typer.Option("--resume", help="Add the missing cells of this run id.")] = None,
    compile_cache: Annotated[Path | None, typer.Option(
        "--compile-cache", help="Folder of JAX's persistent compilation cache (default $RTCBENCH_COMPILE_CACHE, "
        "else ~/.cache/rtcbench/jax): a second run of a scenario loads its compiled episodes.")] = None,
    no_compile_cache: Annotated[bool, typer.Option("--no-compile-cache", help="Compile everything afresh.")] = False,
    only: Annotated[str | None, typer.Option(
        "--only", help="Run only these cells: comma-separated level=L, method=M, setup=S (shell patterns allowed; "
        "a key twice means either). Recorded in the run; --resume re-applies it.")] = None,
    devices: Annotated[int, typer.Option(
        "--devices", help="Shard each cell's rollouts over this many local devices (rollouts must divide).")] = 1,
    rollout_shards: Annotated[int, typer.Option(
        "--rollout-shards", help="Split each cell's rollouts into this many pieces, computed apart (on Ray: by "
        "different workers) and reassembled before the cell is written.")] = 1,
    executor: Annotated[str, typer.Option(
        "--executor", help="local (this process) | ray (Ray actors; pip install -e \".[ray]\").")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Ray cluster to join (e.g. auto, or HOST:6379); default: start a local one.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Ray workers (default: the cluster's GPUs with --device gpu, else its CPUs // "
        "--cpus-per-worker).")] = None,
    cpus_per_worker: Annotated[int, typer.Option("--cpus-per-worker", help="CPUs each CPU Ray worker reserves.")] = 2,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override one field of the scenario, PATH=VALUE with a dotted path and [i] indices, e.g. "
        "--set rollouts=64 --set setups[0].profile.p_spike=0.1 (VALUE is read as YAML; repeatable, applied in "
        "order). Validated like the file; recorded in the run and its config hash; --resume re-applies it.")]
    = None,
) -> None:
    """Run every cell of a scenario and store provenance and metrics, one transaction per finished cell."""
    from rtcbench.engine.compile_cache import default_cache_dir
    from rtcbench.runner import run_scenario
    from rtcbench.store.db import resolve_db_path

    if no_compile_cache and compile_cache is not None:
        raise UserError("give --compile-cache DIR or --no-compile-cache, not both", field="--no-compile-cache")
    cache = None if no_compile_cache else (compile_cache or default_cache_dir())
    if cache is not None and cache.exists() and not cache.is_dir():
        raise UserError("exists and is not a directory", path=str(cache), field="--compile-cache")
    if executor != "ray" and (ray_address is not None or workers is not None):
        raise UserError("--ray-address and --workers need --executor ray", field="--executor")
    if workers is not None and workers < 1 or cpus_per_worker < 1:
        raise UserError("--workers and --cpus-per-worker must be >= 1", field="--workers")
    from rtcbench.executors import RayOptions

    code = run_scenario(scenario, resolve_db_path(db), rollouts=rollouts, device=device, resume=resume,
                        compile_cache=cache, only=only, devices=devices, rollout_shards=rollout_shards,
                        executor=executor, ray_options=RayOptions(address=ray_address, workers=workers,
                                                                  cpus_per_worker=cpus_per_worker), sets=set_)
    if code:
        raise SystemExit(code)  # main() maps SystemExit to the exit status (typer.Exit codes are dropped there)


def query_cmd(
    sql: Annotated[str | None, typer.Argument(
        help="SQL to run, e.g. \"SELECT method, solve_rate FROM v_cells WHERE run_id = $run\" (or give -f).")] = None,
    db: DbOption = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the SQL from this file instead.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="NAME=VALUE bound to $NAME in the SQL (repeatable). The value is passed as text, never "
        "pasted into the SQL; DuckDB casts it where the SQL compares it with a number (or write $NAME::INTEGER).")]
    = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the rows to FILE.parquet or FILE.csv (by suffix) instead of printing them; an "
        "existing file is refused unless --force.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json (printed output)")] = "table",
    force: Annotated[bool, typer.Option("--force", help="Let --out replace an existing file.")] = False,
    max_rows: Annotated[int, typer.Option(
        "--max-rows", help="Refuse a result of more rows than this (it is held in memory to print or write).")]
    = 100_000,
    timeout_s: Annotated[float, typer.Option(
        "--timeout-s", help="Interrupt the query after this many seconds (0: no limit).")] = 60.0,
) -> None:
    """Run SQL on a read-only connection (file-system access disabled: nothing can be written).

    --out is written by rtcbench itself from the rows the query returned, not by SQL (COPY stays refused).
    NULL prints as NULL in the table, as an empty field in CSV and as null in JSON; lists print as JSON
    arrays ([1, 2, 3]) in the table and CSV."""
    import re

    from rtcbench.store.db import read_only, resolve_db_path

    if fmt not in ("table", "csv", "json"):
        raise UserError(f"must be table, csv or json, got {fmt!r}", field="--format")
    if max_rows < 1:
        raise UserError(f"must be >= 1, got {max_rows}", field="--max-rows")
    if not timeout_s >= 0 or math.isinf(timeout_s):
        raise UserError(f"must be a number of seconds >= 0 (0: no limit), got {timeout_s}", field="--timeout-s")
    if (sql is None) == (file is None):
        raise UserError("give the SQL either as the argument or with -f/--file FILE.sql (one of them)", field="SQL")
    if file is not None:
        if not file.is_file():
            raise UserError("no such SQL file", path=str(file), field="--file")
        try:
            sql = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the SQL file: {exc}", path=str(file), field="--file") from None
        if not sql.strip():
            raise UserError("the SQL file is empty", path=str(file), field="--file")
    params: dict[str, str] = {}
    for spec in param or []:
        name, sep, value = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UserError(f"expected NAME=VALUE with NAME a SQL identifier (used as $NAME), got {spec!r}",
                            field="--param")
        if name in params:
            raise UserError(f"{name} is given twice", field="--param")
        params[name] = value
    out_kind = None
    if out is not None:
        out_kind = {".parquet": "parquet", ".csv": "csv"}.get(out.suffix.lower())
        if out_kind is None:
            raise UserError(f"the file name must end in .parquet or .csv, got {out.suffix or 'no suffix'!r}",
                            path=str(out), field="--out")
        if out.is_dir():
            raise UserError("is a directory; give a file name ending in .parquet or .csv", path=str(out), field="--out")
        if not out.parent.is_dir():
            raise UserError(f"directory {str(out.parent)!r} does not exist", path=str(out), field="--out")
    path = resolve_db_path(db)
    if out is not None and out.exists() and path.exists() and out.resolve() == path.resolve():
        raise UserError("is the results file itself", path=str(out), field="--out")
    if out is not None and out.exists() and not force:
        raise UserError("already exists; give --force to replace it", path=str(out), field="--out")
    with read_only(path, sandbox=True) as conn:
        frame = _fetch_bounded(conn, sql, params, max_rows=max_rows, timeout_s=timeout_s, db_path=str(path),
                               field="--file" if file is not None else "SQL")
    if out is not None:
        # Written here, outside DuckDB's sandbox, to a temporary name first: a failed write leaves no half file.
        import os

        import pyarrow as pa

        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            if out_kind == "parquet":  # column types as DuckDB gave them (nullable integers stay integers)
                frame.to_parquet(tmp, index=False, engine="pyarrow")
            else:
                _csv_frame(frame).to_csv(tmp, index=False)
            os.replace(tmp, out)
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"cannot write the file: {exc}", path=str(out), field="--out") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        print(f"{len(frame)} rows x {len(frame.columns)} columns written to {out}")
        return
    if fmt == "csv":
        _csv_frame(frame).to_csv(sys.stdout, index=False)
    elif fmt == "json":
        print(json.dumps(json.loads(frame.to_json(orient="records", date_format="iso")), indent=1))
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(show_lines=False)
        for col in frame.columns:
            table.add_column(str(col), overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*[Text(_cell_text(v)) for v in row])
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(200, console.width))
        console.print(table)
        print(f"({len(frame)} rows)")


def _fetch_bounded(conn, sql: str, params: dict, *, max_rows: int, timeout_s: float, db_path: str, field: str):
    """A user query's rows as a DataFrame, with a row limit and a time limit.

    The rows are fetched in chunks, so a result past `max_rows` is refused after reading at most one chunk
    more than that, not after building all of it; a timer thread interrupts the connection after
    `timeout_s` seconds (0: never). Either is a UserError naming its flag."""
    import threading

    import duckdb
    import pandas as pd

    timed_out = threading.Event()

    def interrupt() -> None:
        timed_out.set()
        conn.interrupt()

    timer = threading.Timer(timeout_s, interrupt) if timeout_s > 0 else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    chunks = []
    rows = 0
    try:
        result = conn.execute(sql, params) if params else conn.execute(sql)
        vectors = max(1, min(64, -(-(max_rows + 1) // 2048)))  # DuckDB hands out rows 2048 (a vector) at a time
        while True:
            chunk = result.fetch_df_chunk(vectors)
            if len(chunk) == 0:
                chunks = chunks or [chunk]  # no rows: keep the column names
                break
            chunks.append(chunk)
            rows += len(chunk)
            if rows > max_rows:
                raise UserError(
                    f"the query returns more than {max_rows:,} rows (--max-rows); add a LIMIT or aggregate, or "
                    "write the rows with --out FILE.parquet and a larger --max-rows", path=db_path, field="--max-rows")
    except duckdb.Error as exc:
        if timed_out.is_set():
            raise UserError(
                f"the query ran past the time limit of {timeout_s:g} s (--timeout-s) and was interrupted; narrow it "
                "(e.g. WHERE run_id = ...) or give a larger --timeout-s", path=db_path, field="--timeout-s") from None
        raise UserError(f"query failed: {str(exc).strip()}", path=db_path, field=field) from None
    finally:
        if timer is not None:
            timer.cancel()
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def _is_null(value) -> bool:
    """NULL as pandas holds it: None, NaN, NaT or pd.NA (a list or a dict is never NULL)."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _plain(value):
    """A list, struct or map value of a query row as plain Python for JSON (NULL inside it: None)."""
    import numpy as np

    if isinstance(value, np.ma.MaskedArray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) and value.dtype != object
                                    else value)]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    return None if _is_null(value) else value


def _is_nested(value) -> bool:
    import numpy as np

    return isinstance(value, np.ndarray | list | tuple | dict)


def _json_text(value) -> str:
    """A list as a JSON array ([1, 2, 3], not numpy's [1 2 3]), a struct or map as a JSON object."""
    return json.dumps(_plain(value), default=str)


def _csv_frame(frame):
    """The frame with list, struct and map values as JSON text, for CSV (NULL stays an empty field)."""
    nested = [col for col in frame.columns if frame[col].dtype == object and any(_is_nested(v) for v in frame[col])]
    if not nested:
        return frame
    frame = frame.copy()
    for col in nested:
        frame[col] = [_json_text(v) if _is_nested(v) else v for v in frame[col]]
    return frame


def _cell_text(value) -> str:
    """One value of the printed table: NULL (None, NaN, NaT or pd.NA) as NULL, lists as JSON arrays."""
    if _is_nested(value):
        return _json_text(value)
    if _is_null(value):
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def report_cmd(
    db: DbOption = None,
    run: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest complete run).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory for report.md and its figures (PNG and SVG).")] = Path("report"),
    videos: Annotated[int, typer.Option(
        "--videos", help="Also render the first K failed and first K solved rollouts of each cell (GIF under "
        "OUT/videos/, re-simulated and checked like `rtcbench render`; needs the run's scenario files).")] = 0,
    video_cells: Annotated[list[str] | None, typer.Option(
        "--video-cells", help="Only these cells get videos: LEVEL/METHOD/SETUP shell patterns, repeatable "
        "(e.g. '*/naive/d4'). Default: every cell.")] = None,
    fps: Annotated[int, typer.Option("--fps", help="Frames (control steps) per second of the videos.")] = 15,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | gpu (the videos' re-simulation).")] = "auto",
) -> None:
    """Write a Markdown report with figures (PNG and SVG) for one run, from the SQL files in reports/."""
    from rtcbench.report import pick_run, write_report
    from rtcbench.store.db import read_only, resolve_db_path

    path = resolve_db_path(db)
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory", path=str(out), field="--out")
    if videos < 0 or fps < 1:
        raise UserError("--videos must be >= 0 and --fps >= 1", field="--videos" if videos < 0 else "--fps")
    if video_cells and not videos:
        raise UserError("--video-cells needs --videos K", field="--video-cells")
    with read_only(path, require_current=True) as conn:
        run_id = pick_run(conn, run, str(path))
    if videos:  # rendered first, into a scratch folder; a rollout that cannot be re-simulated is listed with why
        import shutil
        import tempfile

        from rtcbench.videos import check_gif_fps, pick_report_rollouts

        check_gif_fps(fps)  # the videos are GIFs
        picked = pick_report_rollouts(path, run_id, videos, video_cells)  # bad patterns fail before any work
        from rtcbench.device import select_device

        select_device(device)
        from rtcbench.videos import report_videos

        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".videos-", dir=out.parent))
        try:
            section = report_videos(path, run_id, scratch, picked, videos, video_cells, fps=fps,
                                    log=lambda msg: print(msg, file=sys.stderr))
            with read_only(path, require_current=True) as conn:
                written = write_report(conn, run_id, out, db_path=str(path))
            shutil.rmtree(out / "videos", ignore_errors=True)
            (scratch / "videos").rename(out / "videos")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        text = written.read_text()
        at = text.find("\n## Provenance")
        block = "\n" + "\n".join(section)
        from rtcbench.errors import write_text_atomically

        write_text_atomically(written, text[:at] + block + text[at:] if at >= 0 else text + block, "--out")
    else:
        with read_only(path, require_current=True) as conn:
            written = write_report(conn, run_id, out, db_path=str(path))
    print(f"report of run {run_id} written to {written}")


def compare_cmd(
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Baseline run id or a prefix of one (default: the latest complete run before the "
        "candidate that has a cell with one of its comparability keys; any complete run with --baseline-db).")] = None,
    candidate: Annotated[str | None, typer.Option(
        "--candidate", help="Candidate run id or a prefix of one (default: the latest complete run).")] = None,
    db: DbOption = None,
    baseline_db: Annotated[str | None, typer.Option(
        "--baseline-db", help="DuckDB file of the baseline run (default: the candidate's file, --db).")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", help="METRIC:VALUE, repeatable; VALUE a fraction or a percentage. solve_rate is absolute, in "
        "percentage points: solve_rate:5% = solve_rate:0.05 (the default). The smoothness metrics jerk_mean_d2, "
        "jerk_max_d1 and jerk_max_d2 (used action dims) are relative to the baseline mean: jerk_mean_d2:10% = "
        "jerk_mean_d2:0.10 (the default). A sign may point the way the metric regresses (solve_rate:-5%, "
        "jerk_mean_d2:+10%); either way the threshold applies in both directions.")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the paired tests.")] = 0.05,
    changed_only: Annotated[bool, typer.Option(
        "--changed-only", "--only-changed", help="Show only cells that are better, worse, not comparable or "
        "invalid (the exit code still covers every cell).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """Paired regression gate between two runs, in one results file or two (--baseline-db).

    Without run ids, the candidate is the latest complete run and the baseline the latest complete run
    before it with a comparable cell; the output says which runs were picked and why.

    A not-comparable row names the stored fields that differ (e.g. "policy sha256 differs;
    setups[lt5].profile.p_spike 0.05 -> 0.1"). Against a run made with --only, the cells both runs hold are
    compared and the others are listed once in a note; they never fail the gate.

    Exit 0: no regression; 1: regression; 2: invalid or not comparable results; 4: usage error (a bad
    flag, an unknown run id, no run to pick, a missing or unreadable database), so CI can tell a broken job
    from an incomparable pair of runs."""
    from contextlib import ExitStack

    from rtcbench.errors import UsageError
    from rtcbench.store.compare import NOT_SIGNIFICANT, compare_runs, parse_thresholds
    from rtcbench.store.db import read_only, resolve_db_path

    try:
        thresholds = parse_thresholds(threshold)
        if not 0 < alpha < 1:
            raise UserError(f"must be between 0 and 1, got {alpha}", field="--alpha")
        if fmt not in ("table", "json"):
            raise UserError(f"must be table or json, got {fmt!r}", field="--format")
        path = resolve_db_path(db)
        base_path = Path(baseline_db) if baseline_db else None
        with ExitStack() as stack:
            conn = stack.enter_context(read_only(path))
            base_conn = None
            if base_path is not None and not (base_path.exists() and base_path.resolve() == path.resolve()):
                try:
                    base_conn = stack.enter_context(read_only(base_path))
                except UserError as exc:  # name the flag of the file that failed
                    raise UserError(exc.message, path=exc.path,
                                    field="--baseline-db" if exc.field == "--db" else exc.field) from None
            result = compare_runs(conn, baseline, candidate, thresholds=thresholds, alpha=alpha, db_path=str(path),
                                  baseline_conn=base_conn, baseline_db_path=str(base_path) if base_path else None)
    except UsageError:
        raise
    except UserError as exc:
        raise UsageError.from_user_error(exc) from None
    shown = [c for c in result.cells if not (changed_only and c.outcome == NOT_SIGNIFICANT)]
    if fmt == "json":
        print(json.dumps({
            "baseline": result.baseline, "candidate": result.candidate, "exit_code": result.exit_code,
            "baseline_db": result.baseline_db, "candidate_db": result.candidate_db, "selection": result.selection,
            "thresholds": thresholds, "notes": result.notes, "changed_only": changed_only,
            "cells_hidden": len(result.cells) - len(shown), "only_in": result.only_in,
            "cells": [{"comparability_key": c.comparability_key, "level": c.level, "method": c.method,
                       "setup": c.setup, "outcome": c.outcome, "reason": c.reason, "differences": c.differences,
                       "metrics": [vars(m) for m in c.metrics]} for c in shown],
        }, indent=1, default=str))
    else:
        _print_comparison(result, shown, thresholds)
    if result.exit_code:
        raise SystemExit(result.exit_code)


def _print_comparison(result, shown, thresholds: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rtcbench.store.compare import METRICS

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    two_files = result.baseline_db != result.candidate_db
    for which in ("candidate", "baseline"):
        run_id = getattr(result, which)
        where = f" in {getattr(result, which + '_db')}" if two_files else ""
        if which in result.selection:
            console.print(Text(f"{which} {run_id or '(none)'}{where}: {result.selection[which]}"))
    console.print(Text("thresholds: " + ", ".join(
        f"{name} {100 * value:g} pp (absolute)" if METRICS[name][0] == "rate" else
        f"{name} {100 * value:g}% of the baseline mean (relative)" for name, value in thresholds.items())))
    table = Table(title=f"compare: baseline {result.baseline} -> candidate {result.candidate}")
    for col in ("level", "method", "setup", "outcome", "solve rate", "jerk/step", "jerk ratio",
                "evidence / reason"):
        table.add_column(col, overflow="fold")
    styles = {"worse": "bold red", "better": "green", "invalid": "bold yellow", "not comparable": "yellow"}
    for cell in shown:
        by_name = {m.metric: m for m in cell.metrics}
        solve = by_name.get("solve_rate")
        jerk = by_name.get("jerk_mean_d2")
        evidence = "; ".join(f"{m.metric}: {m.verdict} ({m.evidence})" for m in cell.metrics if m.verdict != "not significant")
        table.add_row(
            Text(cell.level), Text(cell.method), Text(cell.setup), Text(cell.outcome, style=styles.get(cell.outcome, "")),
            Text(f"{solve.baseline:.3f} -> {solve.candidate:.3f} ({100 * solve.effect:+.1f} pp)" if solve else ""),
            Text(f"{jerk.baseline:.3g} -> {jerk.candidate:.3g}" if jerk else ""),
            Text(f"{jerk.ratio:.3f}" if jerk and jerk.ratio is not None else ""),
            Text("; ".join(filter(None, [cell.reason, evidence]))),
        )
    console.print(table)
    hidden = len(result.cells) - len(shown)
    if hidden:
        console.print(Text(f"{hidden} of {len(result.cells)} cells not significant, not shown (--changed-only)"))
    for note in result.notes:
        console.print(Text(f"note: {note}"))
    verdict = {0: "no regression", 1: "REGRESSION", 2: "INVALID or NOT COMPARABLE"}[result.exit_code]
    console.print(f"result: {verdict} (exit {result.exit_code})")


def migrate_cmd(db: DbOption = None) -> None:
    """Upgrade a results file to this rtcbench's schema version (every write does this too)."""
    from rtcbench.store.db import Store, check_db_path, resolve_db_path

    path = resolve_db_path(db)
    check_db_path(path, must_exist=True)
    before, after = Store(path).migrate()
    print(f"{path}: schema version {after}" + (f" (upgraded from {before})" if before != after else " (up to date)"))


def study_cmd(
    db: DbOption = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory of the study page and its plots.")]
    = Path("docs/study"),
    sweep: Annotated[list[str] | None, typer.Option(
        "--sweep", help="Run id of the constant-delay sweep; repeatable (one run per level). Default: the latest "
        "complete run of scenario fixed_sweep.")] = None,
    tail: Annotated[list[str] | None, typer.Option(
        "--tail", help="Run id of the tail matrix; repeatable. Default: the latest complete run of tail_matrix.")]
    = None,
    bench: Annotated[list[Path] | None, typer.Option(
        "--bench", help="JSON lines written by `rtcbench bench` (engine against the limit); repeatable.")] = None,
    skip_tail: Annotated[bool, typer.Option("--skip-tail", help="Leave out the tail matrix.")] = False,
    skip_sweep: Annotated[bool, typer.Option("--skip-sweep", help="Leave out the constant-delay sweep.")] = False,
    ablation: Annotated[list[str] | None, typer.Option(
        "--ablation", help="Run id of a modality ablation (scenario ablation_modality, methods FAMILY.METHOD); "
        "repeatable (one run per level). Default: none.")] = None,
    extra: Annotated[list[str] | None, typer.Option(
        "--extra", help="Run id of a follow-up run (any scenario with a naive method) shown in part 4, each method "
        "against naive with paired tests; repeatable.")] = None,
    allow_dirty: Annotated[bool, typer.Option(
        "--allow-dirty", help="Use runs made from a checkout with uncommitted changes (refused by default: their "
        "code is not any commit's); the page marks each such run.")] = False,
    confirm: Annotated[list[str] | None, typer.Option(
        "--confirm", help="Run id of the pre-registered confirmatory tail matrix (scenario "
        "tail_confirm_multiexpert, held-out seeds); repeatable (one run per part, e.g. each --only part). Its "
        "hypotheses H0 and S1-S9 are judged as docs/study/preregistration_tail.md registers them.")] = None,
) -> None:
    """Write the tail-latency study page (docs/study/README.md + PNGs) from the results file: the pre-registered
    confirmatory tail matrix (--confirm), the paper's constant-delay ordering with paired tests, the tail
    matrix, and cost."""
    from rtcbench.store.db import read_only, resolve_db_path
    from rtcbench.study import check_sweep, check_tail, find_runs, load_runs, read_bench_lines, write_study

    path = resolve_db_path(db)
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a directory", path=str(out), field="--out")
    bench_lines = read_bench_lines(list(bench or []))
    with read_only(path, require_current=True) as conn:
        sweep_data = None if skip_sweep else load_runs(
            conn, find_runs(conn, "fixed_sweep", list(sweep or []), str(path), "--sweep", allow_dirty=allow_dirty))
        tail_data = None if skip_tail else load_runs(
            conn, find_runs(conn, "tail_matrix", list(tail or []), str(path), "--tail", allow_dirty=allow_dirty))
        for data, check in ((sweep_data, check_sweep), (tail_data, check_tail)):
            if data is not None:
                check(data)  # before anything is written
        extras = [load_runs(conn, find_runs(conn, "", [run_id], str(path), "--extra", allow_dirty=allow_dirty))
                  for run_id in extra or []]
        ablation_data = None
        if ablation:
            from rtcbench.study import families

            ablation_data = load_runs(conn, find_runs(conn, "", list(ablation), str(path), "--ablation",
                                                      allow_dirty=allow_dirty))
            if not families(ablation_data):
                raise UserError("no method of this run is labelled FAMILY.METHOD, so it holds no policy family to "
                                "compare", path=str(path), field="--ablation")
        confirm_data = None
        if confirm:
            from rtcbench.study.confirm import check_confirm, load_confirm

            confirm_data = load_confirm(conn, find_runs(conn, "", list(confirm), str(path), "--confirm",
                                                        allow_dirty=allow_dirty))
            for seed in confirm_data:
                check_confirm(seed.data)
        if sweep_data is None and tail_data is None and ablation_data is None and confirm_data is None:
            raise UserError("nothing to write: give --confirm or --ablation, or keep the sweep or the tail",
                            field="--skip-sweep")
        command = " ".join(["rtcbench study",
                            *([f"--sweep {r['run_id']}" for r in sweep_data.runs] if sweep_data else ["--skip-sweep"]),
                            *([f"--tail {r['run_id']}" for r in tail_data.runs] if tail_data else ["--skip-tail"]),
                            *[f"--confirm {r['run_id']}" for seed in confirm_data or [] for r in seed.data.runs],
                            *[f"--ablation {r['run_id']}" for r in (ablation_data.runs if ablation_data else [])],
                            *[f"--extra {e.runs[0]['run_id']}" for e in extras],
                            *[f"--bench {p}" for p in bench or []], *(["--allow-dirty"] if allow_dirty else []),
                            f"--out {out}"])
        page = write_study(conn, out, sweep=sweep_data, tail=tail_data, bench_lines=bench_lines, command=command,
                           extras=extras, ablation=ablation_data, confirm=confirm_data)
    print(f"study written to {page}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("run")(run_cmd)
    app.command("query")(query_cmd)
    app.command("report")(report_cmd)
    app.command("compare")(compare_cmd)
    app.command("migrate")(migrate_cmd)
    app.command("study")(study_cmd)
