"""CLI commands of the policy area: ``rtcbench policy train-expert | collect | train-bc | train-ttrtc | eval``.

JAX and kinetix are imported inside the commands so ``rtcbench --help`` stays fast.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from rtcbench.errors import UserError
from rtcbench.levels import level_slug, load_level_or_user_error

policy_app = typer.Typer(help="Train and evaluate flow policies: expert -> data -> BC -> TTRTC.", no_args_is_help=True)

DeviceOpt = typer.Option("cpu", "--device", help="cpu or gpu; gpu fails if no GPU is present (no silent fallback).")


def _command_line() -> str:
    """The running command with every option it resolved (defaults included), as a shell line."""
    from typer.main import get_current_context

    ctx = get_current_context()
    parts = ["rtcbench", "policy", ctx.info_name]
    for name, value in ctx.params.items():
        flag = "--" + name.replace("_", "-") if name != "H" else "--H"
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None:
                parts += [flag, str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def setup_device(device: str) -> str:
    """Select the JAX device for a pipeline command (``cpu`` or ``gpu``; ``gpu`` without one is an error)."""
    from rtcbench.device import select_device

    return select_device(device, allowed=("cpu", "gpu"))


@policy_app.command("train-expert")
def train_expert_cmd(
    level: str = typer.Option(..., help="Level name (e.g. s/h8_unicycle_balance) or level JSON path."),
    out: Path = typer.Option(None, help="Output folder (default runs/experts/<level_slug>). Resumes if present."),
    steps: int = typer.Option(1_000_000, help="Total environment steps."),
    num_envs: int = typer.Option(128),
    num_steps: int = typer.Option(128, help="Rollout length per update."),
    rpo_alpha: float = typer.Option(0.3, help="RPO mean perturbation; 0 = plain PPO."),
    action_rate_penalty: float = typer.Option(
        0.0, help="Reward shaping against chatter: minus this times ||m_t - m_(t-1)||^2 of the deterministic "
        "action m (the actor mean). 0 = the paper's setup."),
    seed: int = typer.Option(0),
    eval_n: int = typer.Option(512, help="Rollouts for the final solve-rate measurement."),
    probe_lag: list[int] = typer.Option([], help="Also measure the expert acting on observations this many "
                                         "steps old (a delay-sensitivity probe); repeatable."),
    max_minutes: float = typer.Option(None, help="Stop training after this many minutes of this call "
                                      "(compile included), keep the checkpoint, and evaluate what was trained."),
    device: str = DeviceOpt,
) -> None:
    """Train a PPO/RPO expert (DESIGN.md §6) and measure its first-episode solve rate."""
    setup_device(device)
    from rtcbench.policy.expert import ExpertConfig, train_expert

    load_level_or_user_error(level, field="--level")
    if steps <= 0 or num_envs <= 0 or num_steps <= 0:
        raise UserError("steps, num-envs and num-steps must be positive", field="--steps")
    if not action_rate_penalty >= 0:
        raise UserError(f"must be >= 0, got {action_rate_penalty}", field="--action-rate-penalty")
    if max_minutes is not None and not max_minutes > 0:
        raise UserError(f"must be positive, got {max_minutes}", field="--max-minutes")
    cfg = ExpertConfig(level=level, total_steps=steps, num_envs=num_envs, num_steps=num_steps,
                       rpo_alpha=rpo_alpha, action_rate_penalty=action_rate_penalty, seed=seed)
    out = out or Path("runs/experts") / level_slug(level)
    info = train_expert(cfg, out, eval_n=eval_n, command=_command_line(), probe_lags=tuple(probe_lag),
                        max_train_s=None if max_minutes is None else 60.0 * max_minutes)
    s = info["solve_rate"]
    probes = {k: round(v["rate"], 3) for k, v in info.items() if k.startswith("solve_rate_obs_lag")}
    print(json.dumps({"expert": str(out), "solve_rate": s["rate"], "n": s["n"], "wilson95": s["wilson95"],
                      "train_wall_s": round(info["train_wall_s"], 1), "trained_steps": info["trained_steps"],
                      "stopped_at_time_limit": info["stopped_at_time_limit"]} | probes))


@policy_app.command("collect")
def collect_cmd(
    expert: Path = typer.Option(..., help="Expert folder written by train-expert (runs/experts/<level_slug>)."),
    out: Path = typer.Option(None, help="Output folder (default runs/data/<level_slug>)."),
    H: int = typer.Option(8, "--H", help="Chunk size."),
    n_envs: int = typer.Option(256),
    steps: int = typer.Option(512, help="Steps per env (episodes auto-reset)."),
    seed: int = typer.Option(1),
    device: str = DeviceOpt,
) -> None:
    """Collect (observation, next H expert actions) pairs from an expert with solve rate >= 0.65."""
    setup_device(device)
    from rtcbench.policy.collect import collect

    if H < 1 or n_envs < 1 or steps < 1:
        raise UserError("H, n-envs and steps must be positive", field="--H")
    if out is None:
        meta_path = expert / "expert.json"
        level = json.loads(meta_path.read_text())["config"]["level"] if meta_path.exists() else "unknown"
        out = Path("runs/data") / level_slug(level)
    info = collect(expert, out, H=H, n_envs=n_envs, steps=steps, seed=seed, command=_command_line())
    print(json.dumps({k: info[k] for k in ("level", "samples", "episodes", "successful_episodes")}
                     | {"data": str(out)}))


def _eval_and_save(model, level, out: Path, meta: dict, *, eval_n: int, horizon: int, delay_naive: int,
                   flow_steps: int, seed: int, prefix: str) -> dict:
    """Measure d=0 and naive/ttrtc d=delay_naive solve rates, write the checkpoint with them, print a summary."""
    import flax.nnx as nnx

    from rtcbench.policy.checkpoint import save_policy
    from rtcbench.policy.evaluate import ChunkedEvalConfig, evaluate_flow_policy

    graphdef, state = nnx.split(model)
    H = model.cfg.H
    base = ChunkedEvalConfig(n=eval_n, delay=0, horizon=horizon, flow_steps=flow_steps)
    meta["solve_rate"] = evaluate_flow_policy(level, graphdef, state, H, base, seed)
    print(f"d=0 s={horizon}: solve rate {meta['solve_rate']['rate']:.3f} (n={eval_n})", file=sys.stderr)
    if delay_naive > 0:
        delayed = ChunkedEvalConfig(n=eval_n, delay=delay_naive, horizon=max(horizon, delay_naive),
                                    flow_steps=flow_steps, prefix=prefix)
        key = f"solve_rate_{prefix}_d{delayed.delay}_s{delayed.horizon}"
        meta[key] = evaluate_flow_policy(level, graphdef, state, H, delayed, seed)
        print(f"{prefix} d={delayed.delay} s={delayed.horizon}: solve rate {meta[key]['rate']:.3f}", file=sys.stderr)
    meta["sha256"] = save_policy(model, out, meta)
    print(json.dumps({"checkpoint": str(out), "sha256": meta["sha256"], "solve_rate": meta["solve_rate"]["rate"],
                      "n": eval_n, "wilson95": meta["solve_rate"]["wilson95"]}))
    return meta


@policy_app.command("train-bc")
def train_bc_cmd(
    data: Path = typer.Option(..., help="Data folder written by collect."),
    out: Path = typer.Option(None, help="Checkpoint NAME (default policies/<level_slug>/bc)."),
    work: Path = typer.Option(None, help="Resumable training state folder (default runs/bc/<level_slug>)."),
    preset: str = typer.Option("cpu", help="Model size preset: cpu or paper."),
    epochs: int = typer.Option(8),
    batch_size: int = typer.Option(512),
    lr: float = typer.Option(3e-4),
    seed: int = typer.Option(0),
    eval_n: int = typer.Option(512, help="Rollouts for the recorded d=0 solve rate."),
    eval_horizon: int = typer.Option(4, help="Execution horizon s of the recorded evaluation."),
    eval_delay: int = typer.Option(4, help="Also record naive chunking at this delay (0 = skip)."),
    flow_steps: int = typer.Option(5),
    device: str = DeviceOpt,
) -> None:
    """Flow-matching behaviour cloning on collected data; measures and records the solve rate."""
    setup_device(device)
    from rtcbench.policy.bc import FlowTrainConfig, train_flow_policy
    from rtcbench.policy.collect import load_dataset
    from rtcbench.policy.model import PRESETS, make_config, make_policy

    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; allowed: {sorted(PRESETS)}", field="--preset")
    if epochs < 1 or batch_size < 1 or eval_n < 1:
        raise UserError("epochs, batch-size and eval-n must be positive", field="--epochs")
    obs, chunks, data_meta = load_dataset(data)
    level = load_level_or_user_error(data_meta["level"], field="--level")
    slug = level_slug(level.name)
    out = out or Path("policies") / slug / "bc"
    work = work or Path("runs/bc") / slug
    cfg = make_config(preset, level.obs_dim, level.action_dim, H=chunks.shape[1])
    model = make_policy(cfg, seed=seed)
    model.set_obs_stats(obs.mean(0), obs.std(0))
    train_cfg = FlowTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    model, info = train_flow_policy(model, obs, chunks, train_cfg, work, label="bc")
    meta = {"level": level.name, "kind": "bc", "preset": preset,
            "training": {"bc": {**info, "command": _command_line(), "data": data_meta}}}
    _eval_and_save(model, level, out, meta, eval_n=eval_n, horizon=eval_horizon, delay_naive=eval_delay,
                   flow_steps=flow_steps, seed=seed + 20_000, prefix="naive")


@policy_app.command("train-ttrtc")
def train_ttrtc_cmd(
    bc: Path = typer.Option(..., help="BC checkpoint to fine-tune (policies/<level_slug>/bc)."),
    data: Path = typer.Option(..., help="Data folder written by collect."),
    out: Path = typer.Option(None, help="Checkpoint NAME (default: ttrtc beside the BC checkpoint)."),
    work: Path = typer.Option(None, help="Resumable training state folder (default runs/ttrtc/<level_slug>)."),
    epochs: int = typer.Option(4),
    max_prefix: int = typer.Option(4, help="Clean-prefix lengths d in {0..max_prefix}."),
    prefix_decay: float = typer.Option(1.0, help="P(d) proportional to exp(-decay * d)."),
    lr: float = typer.Option(1e-4),
    seed: int = typer.Option(0),
    eval_n: int = typer.Option(512),
    eval_horizon: int = typer.Option(4),
    eval_delay: int = typer.Option(4, help="Also record ttrtc-prefix chunking at this delay (0 = skip)."),
    flow_steps: int = typer.Option(5),
    device: str = DeviceOpt,
) -> None:
    """Training-time RTC fine-tune of a BC checkpoint: per-token time, clean prefix, postfix loss."""
    setup_device(device)
    from rtcbench.policy.bc import FlowTrainConfig, train_flow_policy
    from rtcbench.policy.checkpoint import load_policy
    from rtcbench.policy.collect import load_dataset

    if epochs < 1 or max_prefix < 0:
        raise UserError("epochs must be positive and max-prefix non-negative", field="--epochs")
    obs, chunks, data_meta = load_dataset(data)
    level = load_level_or_user_error(data_meta["level"], field="--level")
    loaded = load_policy(bc, level=level)
    if max_prefix >= loaded.config.H:
        raise UserError(f"max-prefix must be < H = {loaded.config.H}", field="--max-prefix")
    slug = level_slug(level.name)
    out = out or Path(bc).with_suffix("").parent / "ttrtc"
    work = work or Path("runs/ttrtc") / slug
    train_cfg = FlowTrainConfig(epochs=epochs, lr=lr, max_prefix=max_prefix, prefix_decay=prefix_decay, seed=seed,
                                warmup_steps=200)
    model, info = train_flow_policy(loaded.model(), obs, chunks, train_cfg, work, label="ttrtc")
    training = dict(loaded.meta.get("training", {}))
    training["ttrtc"] = {**info, "command": _command_line(), "init": str(loaded.path), "init_sha256": loaded.sha256}
    meta = {"level": level.name, "kind": "ttrtc", "preset": loaded.meta.get("preset"), "training": training}
    _eval_and_save(model, level, out, meta, eval_n=eval_n, horizon=eval_horizon, delay_naive=eval_delay,
                   flow_steps=flow_steps, seed=seed + 20_000, prefix="ttrtc")


@policy_app.command("eval")
def eval_cmd(
    policy: Path = typer.Option(..., help="Checkpoint NAME, NAME.msgpack or NAME.json."),
    level: str = typer.Option(None, help="Level (default: the one in the sidecar)."),
    n: int = typer.Option(512, help="Rollouts."),
    delay: int = typer.Option(0, help="Constant delay d in steps."),
    horizon: int = typer.Option(4, help="Execution horizon s (a new chunk every s steps)."),
    prefix: str = typer.Option("naive", help="naive (ignore the old chunk) or ttrtc (clean prefix tokens)."),
    flow_steps: int = typer.Option(5),
    seed: int = typer.Option(12345),
    device: str = DeviceOpt,
) -> None:
    """Closed-loop solve rate (first episode, Wilson 95% interval) at a constant delay d and horizon s."""
    setup_device(device)
    from rtcbench.policy.checkpoint import load_policy_on_level
    from rtcbench.policy.evaluate import ChunkedEvalConfig, evaluate_flow_policy

    loaded, lvl = load_policy_on_level(policy, level)
    H = loaded.config.H
    if n < 1 or flow_steps < 1:
        raise UserError("n and flow-steps must be positive", field="--n")
    if not (horizon >= 1 and 0 <= delay <= horizon and horizon + delay <= H):
        raise UserError(f"need 1 <= horizon, 0 <= delay <= horizon and horizon + delay <= H = {H}; "
                        f"got delay={delay}, horizon={horizon}", field="--delay")
    if prefix not in ("naive", "ttrtc"):
        raise UserError(f"unknown prefix mode {prefix!r}; allowed: naive, ttrtc", field="--prefix")
    cfg = ChunkedEvalConfig(n=n, delay=delay, horizon=horizon, flow_steps=flow_steps, prefix=prefix)
    out = evaluate_flow_policy(lvl, loaded.graphdef, loaded.state, H, cfg, seed)
    print(json.dumps({"policy": str(loaded.path), "level": lvl.name, "kind": loaded.kind} | out))


@policy_app.command("eval-expert")
def eval_expert_cmd(
    expert: Path = typer.Option(..., help="Expert folder written by train-expert."),
    obs_lag: list[int] = typer.Option([0], help="Act on observations this many steps old (0 = fresh); repeatable."),
    n: int = typer.Option(256, help="Rollouts per lag."),
    seed: int = typer.Option(10_000),
    device: str = DeviceOpt,
) -> None:
    """Closed-loop solve rate of an expert acting on stale observations: one JSON line per lag. A probe of
    how a level and its expert react to latency, with no chunking involved."""
    setup_device(device)
    from rtcbench.policy.evaluate import evaluate_expert
    from rtcbench.policy.expert import expert_paths, load_expert

    if n < 1:
        raise UserError("must be positive", field="--n")
    if any(lag < 0 for lag in obs_lag):
        raise UserError(f"lags must be >= 0, got {obs_lag}", field="--obs-lag")
    sidecar = expert_paths(expert)[1]
    if not sidecar.exists():
        raise UserError("no expert checkpoint here (expected expert.json)", path=str(expert))
    level = load_level_or_user_error(json.loads(sidecar.read_text())["config"]["level"], field="--level")
    _, params, _, _, update, _ = load_expert(expert, level)
    for lag in obs_lag:
        out = evaluate_expert(level, params, n, seed=seed, obs_lag=lag)
        print(json.dumps({"expert": str(expert), "level": level.name, "update": update, "obs_lag": lag,
                          "seed": seed} | out), flush=True)


@policy_app.command("consistency")
def consistency_cmd(
    policy: Path = typer.Option(..., help="BC checkpoint (NAME, NAME.msgpack or NAME.json)."),
    ttrtc: Path = typer.Option(None, help="Also measure method ttrtc with this ttrtc checkpoint."),
    delay: list[int] = typer.Option([1], help="Forecast dhat (= d): prefix actions frozen; repeatable, paired "
                                    "with --horizon in order."),
    horizon: list[int] = typer.Option([1], help="Actions s consumed when the inference starts; repeatable."),
    n: int = typer.Option(256, help="States (closed-loop rollouts of the policy)."),
    flow_steps: int = typer.Option(5),
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
) -> None:
    """How closely naive, RTC (exp, hard) and BID-16 (and ttrtc) keep the frozen prefix: mean |new - prefix|
    on the frozen positions and on the soft band, from the policy's own closed-loop states. One JSON line
    per (d, s, method); see rtcbench/engine/consistency.py."""
    setup_device(device)
    from rtcbench.engine.consistency import inpainting_errors
    from rtcbench.methods.config import BIDMethod, NaiveMethod, RTCMethod, TTRTCMethod
    from rtcbench.policy.checkpoint import load_policy, load_policy_on_level

    if len(delay) != len(horizon):
        raise UserError(f"give as many --delay as --horizon values, got {len(delay)} and {len(horizon)}",
                        field="--delay")
    if n < 1 or flow_steps < 1:
        raise UserError("n and flow-steps must be positive", field="--n")
    loaded, level = load_policy_on_level(policy)
    model = loaded.model()
    H = model.cfg.H
    for d, s in zip(delay, horizon, strict=True):
        if not (0 <= d and 1 <= s and d + s <= H):
            raise UserError(f"need 0 <= delay, 1 <= horizon and delay + horizon <= H = {H}; got {d}, {s}",
                            field="--delay")
    methods = [NaiveMethod(), RTCMethod(schedule="exp"), RTCMethod(schedule="hard"), BIDMethod(n_samples=16)]
    ttrtc_model = None
    if ttrtc is not None:
        ttrtc_loaded = load_policy(ttrtc, level=level)
        if ttrtc_loaded.kind != "ttrtc":
            raise UserError("not a ttrtc checkpoint", path=str(ttrtc), field="--ttrtc")
        ttrtc_model = ttrtc_loaded.model()
    for d, s in zip(delay, horizon, strict=True):
        rows = inpainting_errors(level, model, methods, d=d, s=s, B=n, n=flow_steps, seed=seed)
        if ttrtc_model is not None:
            rows += inpainting_errors(level, ttrtc_model, [TTRTCMethod(policy=str(ttrtc))], d=d, s=s, B=n,
                                      n=flow_steps, seed=seed)
        for row in rows:
            print(json.dumps({"policy": str(loaded.path), "level": level.name} | row), flush=True)


@policy_app.command("baseline")
def baseline_cmd(
    level: str = typer.Option(..., help="Level name or level JSON path."),
    n: int = typer.Option(256, help="Rollouts."),
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
) -> None:
    """Solve rates of zero and uniform-random actions (with 0.1 noise): how easy a level is without a policy."""
    setup_device(device)
    from rtcbench.policy.evaluate import evaluate_baseline

    lvl = load_level_or_user_error(level, field="--level")
    if n < 1:
        raise UserError("n must be positive", field="--n")
    for kind in ("zero", "random"):
        print(json.dumps({"level": lvl.name} | evaluate_baseline(lvl, kind, n, seed)))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(policy_app, name="policy")
