"""CLI commands of the replay area: `validate`, `schedule`, `trace import` and `trace show`.

None of them imports JAX: a schedule is pure numpy, and inspecting it needs no physics.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from rtcbench.errors import UserError
from rtcbench.shipped import shipped_dir
from rtcbench.stats import nearest_rank_percentile

DEFAULT_TRACE_DIR = Path("bench/traces")
PERCENTILES = (50, 90, 95, 99, 99.9)


# ---------------------------------------------------------------------------------------------- scenarios


def validate_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
) -> None:
    """Validate a scenario and every file it names (levels, policies, traces); print its hashes and its cells
    (level | method | setup, in run order).

    Loads each level and checkpoint as a run would (sha256 against the sidecar, dims against the level,
    H against the scenario), so a scenario that validates does not fail on its inputs after a run starts."""
    from rtcbench.plan import load_inputs
    from rtcbench.scenario import Scenario

    sc = Scenario.from_yaml(scenario)
    load_inputs(sc)
    cells = list(sc.cells())
    print(f"{sc.name} v{sc.version}: valid ({scenario})")
    print(f"  levels {len(sc.levels)} x methods {len(sc.methods)} x setups {len(sc.setups)} = {len(cells)} cells")
    print(f"  config_hash       {sc.config_hash}")
    print(f"  comparability_key {sc.comparability_key}")
    for role, sha in sorted(sc.file_digests().items()):
        print(f"  {role:<40} sha256 {sha[:16]}")
    keys = [cell.key for cell in cells]
    widths = [max(len(head), *(len(k[i]) for k in keys)) for i, head in enumerate(("level", "method", "setup"))]
    print("  cells:")
    for row in [("level", "method", "setup"), *keys]:
        print("    " + " | ".join(f"{text:<{w}}" for text, w in zip(row, widths, strict=True)).rstrip())



def schedule_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    setup: Annotated[list[str] | None, typer.Option("--setup", help="Only this setup (repeatable).")] = None,
    rollouts: Annotated[int | None, typer.Option("--rollouts", help="Override the scenario's rollouts.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Override the scenario's max_steps.")] = None,
    delay_seed: Annotated[int | None, typer.Option("--delay-seed", help="Override the scenario's delay seed.")] = None,
    world_pauses: Annotated[
        bool, typer.Option("--world-pauses", help="Timeline of the `sync` method (the world waits for inference).")
    ] = False,
) -> None:
    """Print each setup's schedule statistics (delays, forecasts, violations, stalls), without physics."""
    from rich.console import Console
    from rich.table import Table

    from rtcbench.scenario import Scenario

    sc = Scenario.from_yaml(scenario, check_policies=False)
    seeds = {"delay": delay_seed} if delay_seed is not None else None
    sc = sc.with_overrides(rollouts=rollouts, max_steps=max_steps, seeds=seeds, setups=setup)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped output: do not squeeze the table to 80 columns
    title = (
        f"{sc.name} v{sc.version}: {sc.rollouts} rollouts x {sc.max_steps} steps, H={sc.H}, "
        f"dt_ms={sc.dt_ms:g}, delay seed {sc.seeds.delay}" + (", world pauses" if world_pauses else "")
    )
    table = Table(title=title, title_justify="left")
    columns = [
        ("setup", "left"),
        ("horizon", "left"),
        ("forecaster", "left"),
        ("inferences", "right"),
        ("d p50/p95/p99/max", "right"),
        ("dhat p50/p95/p99", "right"),
        ("violation", "right"),
        ("miss", "right"),
        ("over", "right"),
        ("stall", "right"),
        ("mean s", "right"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for st in sc.setups:
        stats = sc.build_schedule(st, world_pauses=world_pauses).stats
        table.add_row(
            st.name,
            _describe(st.horizon),
            _describe(st.forecaster),
            f"{stats.n_inferences}",
            f"{stats.d_p50:g}/{stats.d_p95:g}/{stats.d_p99:g}/{stats.d_max:g}",
            f"{stats.dhat_p50:g}/{stats.dhat_p95:g}/{stats.dhat_p99:g}",
            _pct(stats.violation_rate),
            _pct(stats.forecast_miss_rate),
            _pct(stats.over_forecast_rate),
            _pct(stats.stall_fraction),
            f"{stats.mean_execution_horizon:.2f}",
        )
    console.print(table)
    console.print(
        "d, dhat, s in control steps. violation: d > H - s. miss: d > dhat. over: d < dhat. "
        "stall: fraction of steps running the fallback action."
    )


def _describe(model) -> str:
    fields = {k: v for k, v in model.model_dump().items() if k != "kind"}
    return f"{model.kind}(" + ",".join(f"{k}={v}" for k, v in fields.items()) + ")"


def _pct(x: float) -> str:
    return "nan" if x != x else f"{100 * x:.2f}%"


# ---------------------------------------------------------------------------------------------- traces

trace_app = typer.Typer(help="Import and inspect delay traces (bench/traces/*.json).", no_args_is_help=True,
                        rich_markup_mode=None)


@trace_app.command("import")
def trace_import_cmd(
    file: Annotated[Path, typer.Argument(help="CSV, JSON or Parquet file of latencies.")],
    name: Annotated[str, typer.Option("--name", help="Trace name; the file becomes OUT_DIR/NAME.json.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where traces live.")] = DEFAULT_TRACE_DIR,
    column: Annotated[str | None, typer.Option("--column", help="Column (CSV/Parquet) or key (JSON) of latencies.")] = None,
    start: Annotated[str | None, typer.Option("--start", help="Column of start timestamps (with --end).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Column of end timestamps (with --start).")] = None,
    unit: Annotated[str, typer.Option("--unit", help="Unit of the values: s, ms, us or ns.")] = "ms",
    source: Annotated[str | None, typer.Option("--source", help="Where the data came from.")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    hardware: Annotated[str | None, typer.Option("--hardware", help="Device the latencies were measured on.")] = None,
    load: Annotated[str | None, typer.Option("--load", help="Load conditions during the measurement.")] = None,
    version: Annotated[int, typer.Option("--version", help="Content version of the trace.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing trace of that name.")] = False,
) -> None:
    """Validate latencies (no empty, NaN, infinite or negative values) and write a versioned trace file."""
    from rtcbench.replay.traces import NAME_PATTERN, load_latencies, write_trace

    if unit not in ("s", "ms", "us", "ns"):
        raise UserError(f"must be s, ms, us or ns, got {unit!r}", field="--unit")
    if not re.match(NAME_PATTERN, name) or len(name) > 64:
        raise UserError(
            f"{name!r} is not a valid trace name; allowed: letters, digits, '_', '.', '-' (up to 64)", field="--name"
        )
    if version < 1:
        raise UserError(f"must be >= 1, got {version}", field="--version")
    latencies = load_latencies(file, column=column, start=start, end=end, unit=unit)
    out = out_dir / f"{name}.json"
    if out.exists() and not force:
        raise UserError("already exists; pass --force to overwrite it or choose another --name", path=str(out))
    sha = write_trace(
        out,
        name=name,
        latencies_ms=latencies,
        source=source or f"imported from {file.name}",
        description=description,
        version=version,
        hardware=hardware,
        load=load,
    )
    p = nearest_rank_percentile(latencies, [50, 99])
    print(f"wrote {out}: {latencies.size} latencies, p50 {p[0]:.1f} ms, p99 {p[1]:.1f} ms, sha256 {sha[:16]}")


@trace_app.command("show")
def trace_show_cmd(
    trace: Annotated[str, typer.Argument(help="Trace name (in --dir) or path to a trace file.")],
    trace_dir: Annotated[Path, typer.Option("--dir", help="Where named traces live.")] = DEFAULT_TRACE_DIR,
    dt_ms: Annotated[float, typer.Option("--dt-ms", help="Control period for the steps view.")] = 33.3,
    bins: Annotated[int, typer.Option("--bins", help="Histogram bins.")] = 20,
) -> None:
    """Print a trace's header, percentiles, a terminal histogram and its delays in steps at --dt-ms."""
    from rich.console import Console
    from rich.table import Table

    from rtcbench.replay.profiles import ms_to_steps
    from rtcbench.replay.traces import read_trace

    if not (dt_ms > 0 and np.isfinite(dt_ms)):
        raise UserError(f"must be a finite number > 0, got {dt_ms}", field="--dt-ms")
    if not 1 <= bins <= 200:
        raise UserError(f"must be between 1 and 200, got {bins}", field="--bins")
    path = Path(trace)
    if not path.is_file():
        name = trace if trace.endswith(".json") else f"{trace}.json"
        path = trace_dir / name
        if not path.is_file() and trace_dir == DEFAULT_TRACE_DIR and (shipped_dir("traces") / name).is_file():
            path = shipped_dir("traces") / name  # a shipped trace, from any working folder
    if not path.is_file():
        raise UserError(f"no trace file {trace!r} and no {path}; give a path or a name in --dir", path=trace)
    tr = read_trace(path)
    h = tr.header
    lat = tr.latencies_ms
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(f"[bold]{h.name}[/bold] v{h.version} ({path}, sha256 {tr.sha256[:16]})")
    console.print(f"source: {h.source}")
    if h.description:
        console.print(f"description: {h.description}")
    if h.hardware or h.load:
        console.print(f"hardware: {h.hardware or '-'}; load: {h.load or '-'}")
    table = Table(title=f"{lat.size} latencies (ms)", title_justify="left")
    for col in ["mean", "min", *(f"p{q:g}" for q in PERCENTILES), "max"]:
        table.add_column(col, justify="right")
    pct = nearest_rank_percentile(lat, PERCENTILES)
    table.add_row(f"{lat.mean():.1f}", f"{lat.min():.1f}", *(f"{v:.1f}" for v in pct), f"{lat.max():.1f}")
    console.print(table)
    console.print(histogram_lines(lat, bins=bins, unit="ms"), highlight=False)
    steps = ms_to_steps(lat, dt_ms)
    values, counts = np.unique(steps, return_counts=True)
    parts = [f"{v}: {100 * c / steps.size:.1f}%" for v, c in zip(values[:12], counts[:12], strict=False)]
    more = f" (+{values.size - 12} more values)" if values.size > 12 else ""
    console.print(f"d = ceil(ms / {dt_ms:g}) steps -> " + ", ".join(parts) + more, highlight=False)


def histogram_lines(values: np.ndarray, *, bins: int = 20, width: int = 36, unit: str = "") -> str:
    """A text histogram: ``[lo, hi) count bar``; the last bin collects everything above p99.9."""
    lo = float(values.min())
    hi = float(nearest_rank_percentile(values, 99.9))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
    peak = max(int(counts.max()), 1)
    lines = []
    for i, c in enumerate(counts):
        label = f"[{edges[i]:8.1f}, {edges[i + 1]:8.1f}{']' if i == bins - 1 else ')'}"
        if i == bins - 1 and (values > hi).any():
            label = f"[{edges[i]:8.1f},      max]"
        bar = "#" * int(round(width * c / peak))
        lines.append(f"{label} {unit} {int(c):7d} {bar}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app (once: `main()` may run many times in one process)."""
    if any(info.name == "schedule" for info in app.registered_commands):
        return
    app.command("validate")(validate_cmd)
    app.command("schedule")(schedule_cmd)
    app.add_typer(trace_app, name="trace")
