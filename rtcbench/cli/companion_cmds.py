"""CLI commands that train the companions of two methods: ``rtcbench policy train-a2c2 | train-vlash``.

    rtcbench policy train-a2c2 --bc BASE --data DATA --dmax D [--out OUT]     correction head (kind a2c2)
    rtcbench policy train-vlash --bc BC --data DATA --dmax D [--out OUT]      conditioned fine-tune (kind vlash)

Both follow ``train-ttrtc``'s conventions: a resumable work folder (``--work``, default runs/<kind>/<level_slug>)
with per-epoch metrics and training curves, a checkpoint NAME.msgpack + NAME.json (default: beside the
input checkpoint) whose sidecar records the command, the data, the input checkpoint and its sha256, and
closed-loop solve rates measured with the benchmark's own engine (the method itself at d = 0 and at
``--eval-delay``; ``--eval-n 0`` skips them). `register(policy_app)` adds them to the ``policy`` sub-app.
JAX is imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from rtcbench.errors import UserError


def _load_inputs(bc: Path, data: Path, dmax: int, kinds: tuple[str, ...], what: str, dmax_limit: str):
    """-> (obs, chunks, data_meta, level, loaded): the data and checkpoint, checked against each other."""
    from rtcbench.levels import load_level_or_user_error
    from rtcbench.policy.checkpoint import load_policy
    from rtcbench.policy.collect import load_dataset

    obs, chunks, data_meta = load_dataset(data)
    level = load_level_or_user_error(data_meta["level"], field="--level")
    loaded = load_policy(bc, level=level)
    if loaded.kind not in kinds:
        raise UserError(f"{what} starts from a {' or '.join(kinds)} checkpoint, got kind {loaded.kind!r}",
                        path=str(loaded.path), field="--bc")
    H = loaded.config.H
    if chunks.shape[1] != H:
        raise UserError(f"the data hold chunks of H={chunks.shape[1]} but the checkpoint has H={H}", field="--data")
    if H < 2:
        raise UserError("needs H >= 2 (episode boundaries are read from overlapping chunks)", field="--bc")
    limit = H - 1
    if not 0 <= dmax <= limit:
        raise UserError(f"must be in [0, {dmax_limit}] = [0, {limit}], got {dmax}", field="--dmax")
    return obs, chunks, data_meta, level, loaded


def _engine_solve(level, model, method, *, delay: int, horizon: int, n: int, flow_steps: int, max_steps: int,
                  seed: int) -> dict:
    """First-episode solve rate of `method` at a constant delay d = dhat, adaptive horizon s, through the
    benchmark's engine (so a2c2's head and vlash's conditioning act as they do in `rtcbench run`)."""
    import numpy as np

    from rtcbench.engine import run_cell
    from rtcbench.policy.evaluate import solve_summary
    from rtcbench.replay.horizon import AdaptiveHorizon
    from rtcbench.replay.schedule import schedule_from_delays

    H = model.cfg.H
    d = np.full((n, max_steps), delay, np.int64)
    sched = schedule_from_delays(d, d, horizon=AdaptiveHorizon(s_min=horizon), H=H, max_steps=max_steps)
    out = run_cell(level, model, method, sched, H=H, n=flow_steps, env_seed=seed, policy_seed=seed + 1,
                   max_steps=max_steps, time_inference=False)
    res = solve_summary(out.per_rollout["solved"], out.per_rollout["length"])
    res.update(delay=delay, horizon=horizon, method=method.label, flow_steps=flow_steps, max_steps=max_steps,
               seed=seed, evaluator="engine")
    if out.head_evals_per_env_step:
        res["head_evals_per_env_step"] = out.head_evals_per_env_step
    return res


def _evaluate_and_save(model, level, method, out: Path, meta: dict, *, eval_n: int, horizon: int, delay: int,
                       flow_steps: int, max_steps: int, seed: int) -> dict:
    from rtcbench.policy.checkpoint import save_policy

    if eval_n > 0:
        kw = dict(n=eval_n, flow_steps=flow_steps, max_steps=max_steps, seed=seed)
        meta["solve_rate"] = _engine_solve(level, model, method, delay=0, horizon=horizon, **kw)
        print(f"{method.label} d=0 s={horizon}: solve rate {meta['solve_rate']['rate']:.3f} (n={eval_n})",
              file=sys.stderr)
        if delay > 0:
            s = max(horizon, delay)
            key = f"solve_rate_{method.kind}_d{delay}_s{s}"
            meta[key] = _engine_solve(level, model, method, delay=delay, horizon=s, **kw)
            print(f"{method.label} d={delay} s={s}: solve rate {meta[key]['rate']:.3f}", file=sys.stderr)
    meta["sha256"] = save_policy(model, out, meta)
    rate = meta.get("solve_rate") or {}
    print(json.dumps({"checkpoint": str(out), "kind": meta["kind"], "sha256": meta["sha256"],
                      "solve_rate": rate.get("rate"), "n": rate.get("n"), "wilson95": rate.get("wilson95")}))
    return meta


def _check_common(epochs: int, batch_size: int, eval_n: int, eval_horizon: int, eval_delay: int, flow_steps: int,
                  eval_max_steps: int) -> None:
    if epochs < 1 or batch_size < 1:
        raise UserError("epochs and batch-size must be positive", field="--epochs")
    if eval_n < 0 or eval_delay < 0 or eval_horizon < 1 or flow_steps < 1 or eval_max_steps < 1:
        raise UserError("need eval-n >= 0, eval-delay >= 0, eval-horizon >= 1, flow-steps >= 1 and "
                        "eval-max-steps >= 1", field="--eval-n")


def train_a2c2_cmd(
    bc: Path = typer.Option(..., help="Base checkpoint the head corrects (bc, ttrtc or vlash); it is bundled, "
                            "frozen, into the a2c2 checkpoint."),
    data: Path = typer.Option(..., help="Data folder written by collect."),
    dmax: int = typer.Option(4, help="Inference delays d ~ U{0..dmax} of the simulated stale chunks (<= H - 1); "
                             "the executed index is t = d + j, j ~ U{0..H-1-d}."),
    out: Path = typer.Option(None, help="Checkpoint NAME (default: a2c2 beside the base checkpoint)."),
    work: Path = typer.Option(None, help="Resumable training state folder (default runs/a2c2/<level_slug>)."),
    epochs: int = typer.Option(4),
    batch_size: int = typer.Option(512),
    lr: float = typer.Option(1e-4),
    hidden: int = typer.Option(128, help="Units per hidden layer of the head."),
    layers: int = typer.Option(2, help="Hidden layers of the head."),
    seed: int = typer.Option(0),
    flow_steps: int = typer.Option(5, help="Euler steps of the base chunks (training and evaluation)."),
    eval_n: int = typer.Option(512, help="Rollouts of each recorded solve rate (0 = skip)."),
    eval_horizon: int = typer.Option(4),
    eval_delay: int = typer.Option(4, help="Also record a2c2 (base naive) at this delay (0 = skip)."),
    eval_max_steps: int = typer.Option(256, help="Steps per evaluation rollout."),
    device: str = typer.Option("cpu", "--device", help="cpu or gpu; gpu fails if no GPU is present."),
) -> None:
    """Train an A2C2 correction head (arXiv 2509.23224) on collected data under simulated delays: the base
    chunk is sampled at o_i, the head sees o_(i+t), the base action A[t] and t, and learns the expert's
    a*_(i+t) - A[t] (rtcbench/policy/a2c2.py)."""
    from rtcbench.cli.policy_cmds import _command_line, _draw_curves, setup_device

    setup_device(device)
    from rtcbench.levels import level_slug
    from rtcbench.methods.config import A2C2Method
    from rtcbench.policy.a2c2 import A2C2Policy, HeadConfig, make_a2c2_loss, make_head
    from rtcbench.policy.finetune import FinetuneConfig, episode_reach, train_module

    _check_common(epochs, batch_size, eval_n, eval_horizon, eval_delay, flow_steps, eval_max_steps)
    if hidden < 1 or layers < 1:
        raise UserError("hidden and layers must be positive", field="--hidden")
    obs, chunks, data_meta, level, loaded = _load_inputs(bc, data, dmax, ("bc", "ttrtc", "vlash"), "train-a2c2",
                                                         "H - 1")
    cfg = loaded.config
    slug = level_slug(level.name)
    out = out or Path(bc).with_suffix("").parent / "a2c2"
    work = work or Path("runs/a2c2") / slug
    head = make_head(HeadConfig(cfg.obs_dim, cfg.action_dim, cfg.H, hidden=hidden, layers=layers), seed)
    train_cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    data_d = {"obs": obs, "chunks": chunks, "reach": episode_reach(chunks)}
    head, info = train_module(head, make_a2c2_loss(loaded.graphdef, dmax=dmax, n=flow_steps), loaded.state, data_d,
                              obs.shape[0], train_cfg, work, label="a2c2")
    _draw_curves({"a2c2": info["history"]}, work / "a2c2_curves", f"{level.name} A2C2 correction head")
    training = dict(loaded.meta.get("training", {}))
    training["a2c2"] = {**info, "command": _command_line(), "init": str(loaded.path), "init_sha256": loaded.sha256,
                        "dmax": dmax, "flow_steps": flow_steps, "data": str(data)}
    meta = {"level": level.name, "kind": "a2c2", "base_kind": loaded.kind, "preset": loaded.meta.get("preset"),
            "data": loaded.meta.get("data"), "training": training}
    model = A2C2Policy(loaded.model(), head)
    _evaluate_and_save(model, level, A2C2Method(policy=str(out)), out, meta, eval_n=eval_n, horizon=eval_horizon,
                       delay=eval_delay, flow_steps=flow_steps, max_steps=eval_max_steps, seed=seed + 20_000)


def train_vlash_cmd(
    bc: Path = typer.Option(..., help="BC (or ttrtc) checkpoint to fine-tune."),
    data: Path = typer.Option(..., help="Data folder written by collect."),
    dmax: int = typer.Option(4, help="Temporal offsets delta ~ U{0..dmax} (< H) between the observation and the "
                             "chunk's start."),
    out: Path = typer.Option(None, help="Checkpoint NAME (default: vlash beside the BC checkpoint)."),
    work: Path = typer.Option(None, help="Resumable training state folder (default runs/vlash/<level_slug>)."),
    epochs: int = typer.Option(4),
    batch_size: int = typer.Option(512),
    lr: float = typer.Option(1e-4),
    seed: int = typer.Option(0),
    flow_steps: int = typer.Option(5),
    eval_n: int = typer.Option(512, help="Rollouts of each recorded solve rate (0 = skip)."),
    eval_horizon: int = typer.Option(4),
    eval_delay: int = typer.Option(4, help="Also record vlash at this delay (0 = skip)."),
    eval_max_steps: int = typer.Option(256, help="Steps per evaluation rollout."),
    device: str = typer.Option("cpu", "--device", help="cpu or gpu; gpu fails if no GPU is present."),
) -> None:
    """VLASH fine-tune (arXiv 2512.01031) of a BC checkpoint: the policy also sees the committed action(s) at the
    step its chunk starts, with random offsets in [0, dmax] (rtcbench/policy/vlash.py)."""
    from rtcbench.cli.policy_cmds import _command_line, _draw_curves, setup_device

    setup_device(device)
    from rtcbench.levels import level_slug
    from rtcbench.methods.config import VLASHMethod
    from rtcbench.policy.finetune import FinetuneConfig, episode_reach, train_module
    from rtcbench.policy.vlash import make_vlash_loss, widen_from

    _check_common(epochs, batch_size, eval_n, eval_horizon, eval_delay, flow_steps, eval_max_steps)
    obs, chunks, data_meta, level, loaded = _load_inputs(bc, data, dmax, ("bc", "ttrtc"), "train-vlash", "H - 1")
    slug = level_slug(level.name)
    out = out or Path(bc).with_suffix("").parent / "vlash"
    work = work or Path("runs/vlash") / slug
    model = widen_from(loaded.model())
    train_cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    data_d = {"obs": obs, "chunks": chunks, "reach": episode_reach(chunks)}
    model, info = train_module(model, make_vlash_loss(dmax=dmax), None, data_d, obs.shape[0], train_cfg, work,
                               label="vlash")
    _draw_curves({"vlash": info["history"]}, work / "vlash_curves", f"{level.name} VLASH fine-tune")
    training = dict(loaded.meta.get("training", {}))
    training["vlash"] = {**info, "command": _command_line(), "init": str(loaded.path), "init_sha256": loaded.sha256,
                         "dmax": dmax, "data": str(data)}
    meta = {"level": level.name, "kind": "vlash", "preset": loaded.meta.get("preset"), "data": loaded.meta.get("data"),
            "training": training}
    _evaluate_and_save(model, level, VLASHMethod(policy=str(out)), out, meta, eval_n=eval_n, horizon=eval_horizon,
                       delay=eval_delay, flow_steps=flow_steps, max_steps=eval_max_steps, seed=seed + 20_000)


COMMANDS = {"train-a2c2": train_a2c2_cmd, "train-vlash": train_vlash_cmd}


def register(policy_app: typer.Typer) -> None:
    """Add train-a2c2 and train-vlash to the ``policy`` sub-app (once; a second call changes nothing)."""
    have = {c.name for c in policy_app.registered_commands}
    for name, fn in COMMANDS.items():
        if name not in have:
            policy_app.command(name)(fn)
