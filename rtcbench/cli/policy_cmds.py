"""CLI commands of the policy area: ``rtcbench policy train-expert | collect | train-bc | train-ttrtc | eval |
verify`` and the measuring commands (modality, consistency, curves, baseline).

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

policy_app = typer.Typer(help="Train and evaluate flow policies: expert -> data -> BC -> TTRTC.", no_args_is_help=True,
                         rich_markup_mode=None)

DeviceOpt = typer.Option("cpu", "--device", help="cpu or gpu; gpu fails if no GPU is present (no silent fallback).")


def _command_line() -> str:
    """The running command with every option it resolved (defaults included), as a shell line."""
    from typer.main import get_current_context

    ctx = get_current_context()
    parts = ["rtcbench", "policy", ctx.info_name]
    for name, value in ctx.params.items():
        flag = "--" + name.replace("_", "-") if name != "H" else "--H"
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, bool):  # an on/off flag: written when on (every such flag is off by default)
                parts += [flag] if v else []
            elif v is not None:
                parts += [flag, str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def setup_device(device: str) -> str:
    """Select the JAX device for a pipeline command (``cpu`` or ``gpu``; ``gpu`` without one is an error)."""
    from rtcbench.device import select_device

    return select_device(device, allowed=("cpu", "gpu"))


@policy_app.command("train-expert")
def train_expert_cmd(
    level: str = typer.Option(..., help="Level name (e.g. s/h8_unicycle_balance) or level JSON path."),
    out: Path = typer.Option(None, help="Output folder (default runs/experts/<level_slug>). Resumes if present. "
                             "With --seeds > 1, one seed_<s>/ folder per seed."),
    steps: int = typer.Option(1_000_000, help="Total environment steps (per seed)."),
    seeds: int = typer.Option(1, help="Train this many seeds (seed, seed+1, ...) side by side, vmapped in one "
                              "program."),
    num_envs: int = typer.Option(128),
    num_steps: int = typer.Option(128, help="Rollout length per update."),
    rpo_alpha: float = typer.Option(0.3, help="RPO mean perturbation; 0 = plain PPO."),
    action_rate_penalty: float = typer.Option(
        0.0, help="Reward shaping against chatter: minus this times ||m_t - m_(t-1)||^2 of the deterministic "
        "action m (the actor mean). 0 = the paper's setup."),
    obs_history: int = typer.Option(1, help="The expert sees its last N observations (the reference: 4)."),
    action_history: bool = typer.Option(False, "--action-history/--no-action-history",
                                        help="The expert also sees its previous executed action (the reference: on)."),
    checkpoint_every: int = typer.Option(250_000, help="Keep a params-only checkpoint every this many steps, "
                                         "with its training solve rate (the data mixture draws among them)."),
    seed: int = typer.Option(0, help="First seed."),
    eval_n: int = typer.Option(512, help="Rollouts for the final solve-rate measurement."),
    probe_lag: list[int] = typer.Option([], help="Also measure the expert acting on observations this many "
                                         "steps old (a delay-sensitivity probe); repeatable."),
    max_minutes: float = typer.Option(None, help="Stop training after this many minutes of this call "
                                      "(compile included), keep the checkpoint, and evaluate what was trained."),
    device: str = DeviceOpt,
) -> None:
    """Train PPO/RPO experts (docs/DESIGN.md §6) and measure each one's first-episode solve rate."""
    setup_device(device)
    from rtcbench.policy.collect import MIN_EXPERT_SOLVE_RATE
    from rtcbench.policy.expert import ExpertConfig, train_population

    load_level_or_user_error(level, field="--level")
    if steps <= 0 or num_envs <= 0 or num_steps <= 0:
        raise UserError("steps, num-envs and num-steps must be positive", field="--steps")
    if seeds < 1:
        raise UserError(f"must be >= 1, got {seeds}", field="--seeds")
    if obs_history < 1:
        raise UserError(f"must be >= 1, got {obs_history}", field="--obs-history")
    if checkpoint_every < 1:
        raise UserError(f"must be positive, got {checkpoint_every}", field="--checkpoint-every")
    if not action_rate_penalty >= 0:
        raise UserError(f"must be >= 0, got {action_rate_penalty}", field="--action-rate-penalty")
    if max_minutes is not None and not max_minutes > 0:
        raise UserError(f"must be positive, got {max_minutes}", field="--max-minutes")
    cfg = ExpertConfig(level=level, total_steps=steps, num_envs=num_envs, num_steps=num_steps,
                       rpo_alpha=rpo_alpha, action_rate_penalty=action_rate_penalty, obs_history=obs_history,
                       action_history=action_history, seed=seed)
    out = out or Path("runs/experts") / level_slug(level)
    seed_list = list(range(seed, seed + seeds))
    dirs = [out] if seeds == 1 else [out / f"seed_{s}" for s in seed_list]
    infos = train_population(cfg, seed_list, dirs, eval_n=eval_n, command=_command_line(),
                             probe_lags=tuple(probe_lag), checkpoint_every=checkpoint_every,
                             max_train_s=None if max_minutes is None else 60.0 * max_minutes)
    for s, d, info in zip(seed_list, dirs, infos, strict=True):
        rate = info["solve_rate"]
        probes = {k: round(v["rate"], 3) for k, v in info.items() if k.startswith("solve_rate_obs_lag")}
        qualifying = sum(c["train_solve_frac"] >= MIN_EXPERT_SOLVE_RATE for c in info["checkpoints"])
        print(json.dumps({"expert": str(d), "seed": s, "solve_rate": rate["rate"], "n": rate["n"],
                          "wilson95": rate["wilson95"], "train_wall_s": round(info["train_wall_s"], 1),
                          "trained_steps": info["trained_steps"], "checkpoints": len(info["checkpoints"]),
                          "qualifying_checkpoints": qualifying,
                          "stopped_at_time_limit": info["stopped_at_time_limit"]} | probes))


@policy_app.command("collect")
def collect_cmd(
    expert: list[Path] = typer.Option(..., help="Expert folder, or a population folder of seed_*/ folders "
                                      "(train-expert --seeds K); repeatable."),
    out: Path = typer.Option(None, help="Output folder (default runs/data/<level_slug>)."),
    H: int = typer.Option(8, "--H", help="Chunk size."),
    episodes: int = typer.Option(1536, help="Episodes to roll out (each with an expert drawn for it)."),
    n_envs: int = typer.Option(256, help="Episodes per round (environments stepped together)."),
    max_steps: int = typer.Option(256, help="Steps per round; an episode that has not ended by then is dropped."),
    label: str = typer.Option("sample", help="sample: a draw from the expert's own distribution (the reference); "
                              "mean: its deterministic clipped mean."),
    keep: str = typer.Option("all", help="all: every episode (the reference); success: successful ones only."),
    allow_single: bool = typer.Option(False, "--allow-single", help="Allow a single qualifying expert seed."),
    min_train_solve: float = typer.Option(0.65, help="A checkpoint qualifies when its training solve rate reached "
                                          "this (the reference: 0.65)."),
    seed: int = typer.Option(1),
    device: str = DeviceOpt,
) -> None:
    """Collect (observation, next H expert actions) pairs from a mixture of expert seeds and checkpoints whose
    training solve rate reached 0.65 (rtcbench/policy/collect.py)."""
    setup_device(device)
    from rtcbench.policy.collect import collect, qualifying_experts

    if H < 1 or n_envs < 1 or episodes < 1 or max_steps < 1:
        raise UserError("H, episodes, n-envs and max-steps must be positive", field="--H")
    if out is None:
        found, rejected = qualifying_experts(expert, min_train_solve)
        out = Path("runs/data") / level_slug((found or rejected)[0]["cfg"].level)
    info = collect(expert, out, H=H, episodes=episodes, n_envs=n_envs, max_steps=max_steps, seed=seed, label=label,
                   keep=keep, allow_single=allow_single, min_train_solve=min_train_solve, command=_command_line())
    print(json.dumps({k: info[k] for k in ("level", "label", "keep", "n_experts", "samples", "episodes",
                                           "kept_episodes", "successful_episodes")}
                     | {"shares": [round(e["share"], 3) for e in info["experts"]], "data": str(out)}))


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
    modality_obs: int = typer.Option(128, help="Held-out observations for the recorded modality (0 = skip)."),
    device: str = DeviceOpt,
) -> None:
    """Flow-matching behaviour cloning on collected data; measures and records the solve rate and modality."""
    setup_device(device)
    from rtcbench.policy.bc import FlowTrainConfig, train_flow_policy
    from rtcbench.policy.collect import load_dataset
    from rtcbench.policy.model import PRESETS, make_config, make_policy

    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; allowed: {sorted(PRESETS)}", field="--preset")
    if epochs < 1 or batch_size < 1 or eval_n < 1:
        raise UserError("epochs, batch-size and eval-n must be positive", field="--epochs")
    if modality_obs < 0 or modality_obs == 1:
        raise UserError(f"must be 0 (skip) or >= 2, got {modality_obs}", field="--modality-obs")
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
    _draw_curves({"bc": info["history"]}, work / "bc_curves", f"{level.name} BC")
    meta = {"level": level.name, "kind": "bc", "preset": preset, "data": data_summary(data_meta),
            "training": {"bc": {**info, "command": _command_line(), "data": data_meta}}}
    if modality_obs > 0:
        meta["modality"] = _measure_and_print_modality(model, level, modality_obs, flow_steps, seed + 30_000)
    _eval_and_save(model, level, out, meta, eval_n=eval_n, horizon=eval_horizon, delay_naive=eval_delay,
                   flow_steps=flow_steps, seed=seed + 20_000, prefix="naive")


def _draw_curves(histories: dict, stem: Path, title: str) -> None:
    from rtcbench.policy.curves import plot_curves

    png, _ = plot_curves(histories, stem, title=title)
    print(f"training curves: {png} (+ .svg); per-block metrics: {stem.parent}/*metrics.jsonl", file=sys.stderr)


@policy_app.command("curves")
def curves_cmd(
    sidecars: list[Path] = typer.Argument(..., help="Checkpoint sidecars (expert.json, bc.json, ttrtc.json) "
                                          "or the checkpoints themselves."),
    out: Path = typer.Option(Path("curves"), help="Output folder: <name>.png and .svg per sidecar."),
) -> None:
    """Draw the training curves recorded in checkpoint sidecars (reward and training solve rate of experts,
    loss per epoch of BC and training-time RTC, validation loss where recorded), with the sidecar's final
    closed-loop solve rates, shipped policies included. Titles name the level, the kind and the sidecar's path
    relative to the working directory."""
    from rtcbench.policy.curves import curves_title, evals_from_sidecar, histories_from_sidecar, plot_curves

    for path in sidecars:
        sidecar = path if path.suffix == ".json" else path.with_suffix(".json")
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read this sidecar: {exc}", path=str(sidecar)) from None
        histories = histories_from_sidecar(meta) if isinstance(meta, dict) else {}
        if not histories:
            raise UserError("has no training history to draw", path=str(sidecar))
        name = "_".join(p for p in sidecar.with_suffix("").parts[-3:] if p not in (".", ".."))
        png, _ = plot_curves(histories, out / name, title=curves_title(sidecar, meta),
                             evals=evals_from_sidecar(meta))
        print(png)


def data_summary(data_meta: dict) -> dict:
    """What a BC sidecar says of its data at top level: how many experts, which label and keep modes.
    Data made before the mixture pipeline came from one expert's clipped mean on successful episodes."""
    return {"n_experts": data_meta.get("n_experts", 1), "label": data_meta.get("label", "mean"),
            "keep": data_meta.get("keep", "success"), "samples": data_meta.get("samples")}


MODALITY_M = 16  # chunks sampled at each observation


def _measure_and_print_modality(model, level, n_obs: int, flow_steps: int, seed: int) -> dict:
    from rtcbench.policy.modality import SUMMARY_KEYS, measure_modality

    out = measure_modality(level, model, n_obs=n_obs, m=MODALITY_M, n=flow_steps, seed=seed)
    print("modality: " + ", ".join(f"{k} {out[k]['value']:.3f} [{out[k]['ci95'][0]:.3f}, {out[k]['ci95'][1]:.3f}]"
                                   for k in SUMMARY_KEYS),
          file=sys.stderr)
    return out


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
    _draw_curves({"ttrtc": info["history"]}, work / "ttrtc_curves", f"{level.name} training-time RTC")
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
    from rtcbench.policy.expert import evaluate_expert, expert_paths, load_expert

    if n < 1:
        raise UserError("must be positive", field="--n")
    if any(lag < 0 for lag in obs_lag):
        raise UserError(f"lags must be >= 0, got {obs_lag}", field="--obs-lag")
    sidecar = expert_paths(expert)[1]
    if not sidecar.exists():
        raise UserError("no expert checkpoint here (expected expert.json)", path=str(expert))
    level = load_level_or_user_error(json.loads(sidecar.read_text())["config"]["level"], field="--level")
    cfg, params, _, _, update, _ = load_expert(expert, level)
    for lag in obs_lag:
        out = evaluate_expert(level, cfg, params, n, seed=seed, obs_lag=lag)
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


@policy_app.command("modality")
def modality_cmd(
    policy: Path = typer.Option(..., help="Checkpoint NAME, NAME.msgpack or NAME.json."),
    n_obs: int = typer.Option(128, help="Held-out observations (the policy's own closed-loop states)."),
    m: int = typer.Option(MODALITY_M, help="Chunks sampled at each observation."),
    boundary_s: int = typer.Option(4, help="d = s of the aligned chunk-boundary disagreement."),
    flow_steps: int = typer.Option(5),
    seed: int = typer.Option(0),
    record: bool = typer.Option(False, "--record", help="Write the result into the checkpoint's sidecar "
                                "(`modality`); the weights and their sha256 are untouched."),
    device: str = DeviceOpt,
) -> None:
    """A policy's modality (rtcbench/policy/modality.py): stochasticity (same-observation chunk distance against
    different-observation), first-action sign disagreement, the aligned chunk-boundary disagreement under naive
    chunking, and modes: the share of observations whose first actions two Gaussians fit better than one
    (BIC gain > 10) and the median BIC gain, each with a bootstrap 95% interval over observations. One JSON
    line; --record writes these keys (older sidecars record stochasticity as `spread`)."""
    setup_device(device)
    from rtcbench.policy.checkpoint import checkpoint_paths, load_policy_on_level
    from rtcbench.policy.modality import measure_modality

    loaded, level = load_policy_on_level(policy)
    H = loaded.config.H
    if n_obs < 2 or m < 2 or flow_steps < 1:
        raise UserError(f"need n-obs >= 2, m >= 2 and flow-steps >= 1; got {n_obs}, {m}, {flow_steps}", field="--n-obs")
    if not 1 <= boundary_s < H:
        raise UserError(f"must be in [1, H) with H = {H}, got {boundary_s}", field="--boundary-s")
    out = measure_modality(level, loaded.model(), n_obs=n_obs, m=m, boundary_s=boundary_s, n=flow_steps, seed=seed)
    if record:
        sidecar_path = checkpoint_paths(loaded.path)[1]
        meta = json.loads(sidecar_path.read_text())
        meta["modality"] = out
        tmp = sidecar_path.with_name(sidecar_path.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        tmp.replace(sidecar_path)
    print(json.dumps({"policy": str(loaded.path), "level": level.name, "kind": loaded.kind,
                      "data": loaded.meta.get("data", data_summary(loaded.meta.get("training", {}).get("bc", {})
                                                                   .get("data", {})))} | out))


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


@policy_app.command("verify")
def verify_cmd(
    paths: list[Path] = typer.Argument(None, help="Checkpoint sidecars or folders (default: policies/)."),
    n: int = typer.Option(64, help="Fresh d = 0 rollouts per checkpoint."),
    delay_n: int = typer.Option(128, help="Fresh d = 4 rollouts per delay-sensitive BC checkpoint."),
    seed: int = typer.Option(777, help="Seed of the fresh rollouts (not one any record used)."),
    static_only: bool = typer.Option(False, "--static-only", help="Only load and check each checkpoint; no rollouts."),
    device: str = DeviceOpt,
) -> None:
    """Re-measure shipped checkpoints against their sidecars (load, hashes and dims; d = 0 solve rate by Fisher's
    exact test; delay sensitivity). Exit 1 when any check fails. Run when policies, levels or packages change."""
    setup_device(device)
    from rtcbench.policy.verify import verify

    checks = verify(paths or [Path("policies")], n=n, delay_n=delay_n, seed=seed, static_only=static_only)
    failed = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app (rtcbench.cli.main adds the companions' trainers,
    rtcbench.cli.companion_cmds, to the same `policy` group)."""
    app.add_typer(policy_app, name="policy")
