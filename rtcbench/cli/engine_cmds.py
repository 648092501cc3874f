"""CLI commands of the engine area: `rtcbench bench` (engine throughput against the limit) and
`rtcbench record-trace` (also reachable as `rtcbench trace record`).

Records the real wall-clock latencies of the jitted inference of a method on this machine and writes them
as a delay trace (bench/traces/NAME.json by default) whose header names the hardware and the load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rtcbench.errors import UserError, make_output_dir, write_text_atomically
from rtcbench.stats import nearest_rank_percentile

METHODS = ("naive", "rtc", "bid", "te", "sync", "ttrtc")


def record_trace_cmd(
    method: Annotated[str, typer.Option("--method", help=f"Method to time: one of {', '.join(METHODS)}.")],
    policy: Annotated[Path, typer.Option("--policy", help="Checkpoint (NAME.msgpack + NAME.json).")],
    name: Annotated[str, typer.Option("--name", help="Trace name; the file becomes OUT_DIR/NAME.json.")],
    background_load: Annotated[
        int, typer.Option("--background-load", help="Busy-looping background processes while recording.")
    ] = 0,
    level: Annotated[str | None, typer.Option("--level", help="Level (default: the checkpoint's level).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Rollouts per inference call (1 = one robot).")] = 1,
    calls: Annotated[int, typer.Option("--calls", help="Timed inference calls (latencies in the trace).")] = 300,
    flow_steps: Annotated[int, typer.Option("--flow-steps", help="Euler steps n.")] = 5,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where traces live.")] = Path("bench/traces"),
) -> None:
    """Record the wall-clock latency of each jitted inference call as a trace."""
    import pydantic

    from rtcbench.engine.record import record_latencies
    from rtcbench.methods.config import MethodConfig
    from rtcbench.policy.checkpoint import load_policy_on_level
    from rtcbench.replay.traces import write_trace

    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}", field="--method")
    for opt, value, low in (("--background-load", background_load, 0), ("--batch", batch, 1),
                            ("--calls", calls, 1), ("--flow-steps", flow_steps, 1)):
        if value < low:
            raise UserError(f"must be >= {low}, got {value}", field=opt)
    loaded, lvl = load_policy_on_level(policy, level)  # dims checked against the level
    spec = {"kind": method, **({"policy": str(policy)} if method == "ttrtc" else {})}
    try:
        cfg = pydantic.TypeAdapter(MethodConfig).validate_python(spec)
    except pydantic.ValidationError as exc:
        raise UserError(str(exc.errors()[0]["msg"]), field="--method") from None
    if method == "ttrtc" and loaded.kind != "ttrtc":
        raise UserError("method ttrtc needs a checkpoint of kind 'ttrtc'", path=str(policy), field="kind")
    latencies, hardware, load = record_latencies(cfg, loaded, lvl, batch=batch, n_calls=calls,
                                                 background_load=background_load, n=flow_steps)
    path = out_dir / f"{name}.json"
    sha = write_trace(
        path, name=name, latencies_ms=latencies, hardware=hardware, load=load,
        source=(f"recorded: rtcbench record-trace --method {method} --policy {policy} --batch {batch} "
                f"--background-load {background_load}; checkpoint sha256 {loaded.sha256[:16]}; level {lvl.name}"),
        description=f"Wall-clock ms per jitted {cfg.label} inference call (batch {batch}), one call per entry.",
    )
    p50, p95 = nearest_rank_percentile(latencies, [50, 95])
    print(f"wrote {path} ({len(latencies)} latencies, sha256 {sha[:16]}): p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
          f"max {max(latencies):.2f} ms")


def bench_cmd(
    level: Annotated[str | None, typer.Option("--level", help="Level (default: the checkpoint's level).")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Checkpoint (NAME.msgpack + NAME.json).")] = None,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="Instead of --policy: a freshly initialised model of this preset (cpu | paper). "
        "Its weights are untrained, so only the timing means anything.")] = None,
    method: Annotated[str, typer.Option("--method", help="naive | rtc | bid | te (ttrtc needs a ttrtc checkpoint).")]
    = "naive",
    batch: Annotated[int, typer.Option("--batch", help="Rollouts B.")] = 64,
    steps: Annotated[int, typer.Option("--steps", help="Env steps T per rollout.")] = 128,
    delay: Annotated[int, typer.Option("--delay", help="Constant delay d of every inference (steps).")] = 2,
    s_min: Annotated[int, typer.Option("--s-min", help="Adaptive execution horizon s_min.")] = 4,
    H: Annotated[int, typer.Option("--H", help="Chunk size (must match a checkpoint's).")] = 8,
    flow_steps: Annotated[int, typer.Option("--flow-steps", help="Euler steps n.")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", help="Interleaved timing repeats (the fastest of each is compared).")] = 5,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | gpu. gpu fails when no GPU is present.")]
    = "auto",
) -> None:
    """Engine env-steps/s against the limit of this machine, in the same run: physics alone plus the bare
    batched policy calls the engine made (rtcbench.engine.limit). Prints one JSON line."""
    import json

    from rtcbench.device import select_device

    select_device(device)
    import numpy as np

    from rtcbench.engine.limit import engine_vs_limit
    from rtcbench.levels import load_level_or_user_error
    from rtcbench.methods.config import BIDMethod, NaiveMethod, RTCMethod, TEMethod, TTRTCMethod
    from rtcbench.replay.horizon import AdaptiveHorizon
    from rtcbench.replay.schedule import schedule_from_delays

    methods = {"naive": NaiveMethod, "rtc": RTCMethod, "bid": BIDMethod, "te": TEMethod,
               "ttrtc": lambda: TTRTCMethod(policy=str(policy))}
    if method not in methods:
        raise UserError(f"unknown method {method!r}; allowed: {', '.join(methods)}", field="--method")
    if (policy is None) == (preset is None):
        raise UserError("give exactly one of --policy (a checkpoint) and --preset (untrained weights)",
                        field="--policy")
    for opt, value, low in (("--batch", batch, 1), ("--steps", steps, 2), ("--delay", delay, 0),
                            ("--s-min", s_min, 1), ("--H", H, 1), ("--flow-steps", flow_steps, 1),
                            ("--repeats", repeats, 1)):
        if value < low:
            raise UserError(f"must be >= {low}, got {value}", field=opt)
    if s_min > H:
        raise UserError(f"s-min must be <= H = {H}, got {s_min}", field="--s-min")
    weights = "untrained"
    if policy is not None:
        from rtcbench.policy.checkpoint import load_policy_on_level

        model, lvl = load_policy_on_level(policy, level)
        H, weights = model.config.H, f"checkpoint {model.sha256[:12]}"
        if method == "ttrtc" and model.kind != "ttrtc":
            raise UserError("method ttrtc needs a ttrtc checkpoint", path=str(policy), field="--method")
    else:
        from rtcbench.policy.model import PRESETS, make_config, make_policy

        if not level:
            raise UserError("no level: --preset needs --level (there is no checkpoint to name one)", field="--level")
        lvl = load_level_or_user_error(level, field="--level")
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; allowed: {', '.join(sorted(PRESETS))}", field="--preset")
        model = make_policy(make_config(preset, lvl.obs_dim, lvl.action_dim, H), seed=0)
    d = np.full((batch, steps), delay)
    sched = schedule_from_delays(d, d, horizon=AdaptiveHorizon(s_min=s_min), H=H, max_steps=steps)
    print(f"bench: {lvl.name}, {method}, batch {batch} x {steps} steps: compiling the engine and the physics-only "
          f"scan, then {repeats} interleaved timing repeats (fastest of each compared)", file=sys.stderr)
    report = engine_vs_limit(lvl, model, methods[method](), sched, H=H, n=flow_steps, repeats=repeats)
    import datetime as dt

    from rtcbench import __version__
    from rtcbench.provenance import git_state

    commit, dirty = git_state()
    out = {"timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rtcbench_version": __version__,
           "git_commit": commit, "git_dirty": dirty, "method": method, "level": lvl.name, "weights": weights, "preset": preset or getattr(model, "meta", {}).get("preset"),
           "delay": delay, "s_min": s_min}
    out |= {k: (round(v, 3) if isinstance(v, float) else v) for k, v in report.as_dict().items()
            if k != "engine_times_s"}
    print(json.dumps(out))


def bench_sweep_cmd(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML (e.g. bench/scenarios/longtail_5pct.yaml).")],
    rollouts: Annotated[int | None, typer.Option("--rollouts", help="Override the scenario's rollouts per cell.")]
    = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="PATH=VALUE override of the scenario, as `rtcbench run --set` (repeatable).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Ray workers of the Ray run.")] = 2,
    cpus_per_worker: Annotated[int, typer.Option("--cpus-per-worker", help="CPUs each Ray worker reserves.")] = 1,
    ray_cache: Annotated[str, typer.Option(
        "--ray-cache", help="cold: the Ray run starts from an empty compile cache and is compared with the cold "
        "local run; warm: it reuses the local runs' cache and is compared with the warm local run.")] = "cold",
    keep: Annotated[Path | None, typer.Option(
        "--keep", help="Keep the runs' DuckDB files, logs and caches in this new folder (default: a temporary "
        "folder, removed).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also append the JSON line to this file.")] = None,
) -> None:
    """Time one scenario three ways in fresh processes (local with an empty compile cache, local again with
    it warm, Ray with --workers workers) and print one JSON line: wall and compile seconds of each, the Ray
    over local wall ratio and the warm over cold compile ratio, and whether all three stored the same
    rollouts (rtcbench.sweep_bench)."""
    import json

    from rtcbench.sweep_bench import bench_sweep

    result = bench_sweep(scenario, rollouts=rollouts, sets=set_, workers=workers, cpus_per_worker=cpus_per_worker,
                         ray_cache=ray_cache, keep=keep, log=lambda m: print(m, file=sys.stderr, flush=True))
    line = json.dumps(result)
    print(line)
    if out is not None:
        _append_line(out, line)
    if not result["metrics_equal"]:
        print("bench-sweep: the three runs stored different rollouts, so their timings do not compare "
              "(rerun with --keep DIR to inspect them)", file=sys.stderr)
        raise typer.Exit(1)


def _append_line(out: Path, line: str) -> None:
    """Append one line to the JSON-lines file ``--out``: the whole file is rewritten under a temporary name and
    renamed into place, so a full disk never leaves it cut mid-line (a `UserError` naming it instead)."""
    make_output_dir(out.parent, "--out")
    try:
        previous = out.read_text(encoding="utf-8") if out.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the file to append to it ({exc})", path=str(out), field="--out") from None
    if previous and not previous.endswith("\n"):
        previous += "\n"
    write_text_atomically(out, previous + line + "\n", "--out")


def render_cmd(
    cell: Annotated[str, typer.Option("--cell", help="LEVEL/METHOD/SETUP of the run, e.g. "
                                      "l/h4_cartpole:packed/naive/d4.")],
    rollout: Annotated[int, typer.Option("--rollout", help="Rollout index within the cell.")] = 0,
    run: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest complete run).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Video file, .gif or .mp4 (default "
                                             "render/<run>_<cell>_<rollout>.gif).")] = None,
    fps: Annotated[int, typer.Option("--fps", help="Frames (control steps) per second.")] = 15,
    db: Annotated[str | None, typer.Option("--db", help="Results file (default $RTCBENCH_DB, else "
                                           "./rtcbench.duckdb).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | gpu.")] = "auto",
    scenario: Annotated[Path | None, typer.Option(
        "--scenario", help="The run's scenario file, where it is not at the path the run recorded (a run made "
        "in another folder); it must still give the cell's config hash.")] = None,
) -> None:
    """Re-simulate one stored rollout exactly, in the batch (shard) the run computed it in (checked against
    its stored solve, length and return), and write a video of it, with the step, the chunk in flight, when
    it lands and stalls drawn over each frame."""
    import json

    from rtcbench.device import select_device
    from rtcbench.report import pick_run
    from rtcbench.store.db import read_only, resolve_db_path

    if fps < 1 or rollout < 0:
        raise UserError("--fps must be >= 1 and --rollout >= 0", field="--fps" if fps < 1 else "--rollout")
    db_path = resolve_db_path(db)
    with read_only(db_path) as conn:
        run_id = pick_run(conn, run, str(db_path))
    if out is None:
        out = Path("render") / f"{run_id}_{cell.replace('/', '_').replace(':', '')}_{rollout}.gif"
    select_device(device)
    from rtcbench.videos import render_stored_rollout

    info = render_stored_rollout(db_path, run_id, cell, rollout, out, fps=fps, scenario_path=scenario)
    print(json.dumps(info))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app (idempotent: `main()` may run many times in one process)."""
    if not any(info.name == "bench" for info in app.registered_commands):
        app.command("bench")(bench_cmd)
    if not any(info.name == "bench-sweep" for info in app.registered_commands):
        app.command("bench-sweep")(bench_sweep_cmd)
    if not any(info.name == "render" for info in app.registered_commands):
        app.command("render")(render_cmd)
    if not any(info.name == "record-trace" for info in app.registered_commands):
        app.command("record-trace")(record_trace_cmd)
    try:  # also as `rtcbench trace record`, inside the replay area's `trace` group when it exists
        from rtcbench.cli.replay_cmds import trace_app
    except ImportError:
        return
    if not any(info.name == "record" for info in trace_app.registered_commands):
        trace_app.command("record")(record_trace_cmd)
