"""Flow-matching behaviour cloning and its training-time RTC fine-tune (docs/DESIGN.md §6 steps 3-4).

Loss (`flow_matching_loss`), per sample with true chunk a [H, A], noise e, flow time tau ~ U(0, 1) and a
prefix length d drawn from `prefix_weights(max_prefix, decay)` (d = 0 always when max_prefix = 0, i.e. BC):

    tau_i = 1 for i < d, tau otherwise;   x_i = (1 - tau_i) e_i + tau_i a_i;   target_i = a_i - e_i
    loss  = mean over samples of  sum_{i >= d} ||v_i - target_i||^2 / ((H - d) A)

Optimiser: AdamW (lr 3e-4, weight decay 1e-2), linear warm-up then cosine decay to 0.1 lr, global-norm
clip 10, batch 512. `make_train_epoch(cfg, graphdef, n_samples)` -> a pure jitted epoch function; the
driver `train_flow_policy` loops over epochs with a progress bar and writes a resumable state after
each epoch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.policy.ttrtc import prefix_weights


@dataclass(frozen=True)
class FlowTrainConfig:
    """Static settings of a BC (max_prefix = 0) or TTRTC (max_prefix = 4) training run."""

    epochs: int = 8
    batch_size: int = 512
    lr: float = 3e-4
    warmup_steps: int = 1000
    weight_decay: float = 1e-2
    clip_norm: float = 10.0
    max_prefix: int = 0
    prefix_decay: float = 1.0
    seed: int = 0


def flow_matching_loss(model, obs, actions, key, max_prefix: int, prefix_decay: float):
    """obs [B, O], actions [B, H, A] -> scalar loss (postfix tokens only). Draws tau, noise and d."""
    B = actions.shape[0]
    k_tau, k_noise, k_d = jax.random.split(key, 3)
    tau = jax.random.uniform(k_tau, (B,))  # [B]
    noise = jax.random.normal(k_noise, actions.shape)  # [B, H, A]
    if max_prefix > 0:
        d = jax.random.choice(k_d, max_prefix + 1, (B,), p=prefix_weights(max_prefix, prefix_decay))  # [B]
    else:
        d = jnp.zeros((B,), jnp.int32)
    return prefix_flow_loss(model, obs, actions, noise, tau, d)


def prefix_flow_loss(model, obs, actions, noise, tau, d):
    """The loss for given noise [B, H, A], flow time tau [B] and clean-prefix length d [B]."""
    B, H, A = actions.shape
    clean = jnp.arange(H)[None, :] < d[:, None]  # [B, H]
    tau_tok = jnp.where(clean, 1.0, tau[:, None])  # [B, H]
    x = (1.0 - tau_tok[..., None]) * noise + tau_tok[..., None] * actions  # [B, H, A]
    v = model.velocity(obs, x, tau_tok)  # [B, H, A]
    err = jnp.sum((v - (actions - noise)) ** 2, axis=-1)  # [B, H]
    postfix = (~clean).astype(jnp.float32)
    per_sample = jnp.sum(err * postfix, axis=-1) / (jnp.sum(postfix, axis=-1) * A)  # [B]
    return per_sample.mean()


def make_optimizer(cfg: FlowTrainConfig, total_steps: int):
    import optax

    warmup = min(cfg.warmup_steps, max(1, total_steps // 10))
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(total_steps, warmup + 1), cfg.lr * 0.1)
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                       optax.adamw(schedule, weight_decay=cfg.weight_decay))


def make_train_epoch(cfg: FlowTrainConfig, graphdef, n_samples: int, total_steps: int):
    """-> jitted ``epoch(params, rest, opt_state, obs [M, O], chunks [M, H, A], key) -> (params, opt_state, loss)``."""
    import flax.nnx as nnx
    import optax

    tx = make_optimizer(cfg, total_steps)
    n_batches = n_samples // cfg.batch_size

    def loss_fn(params, rest, obs, actions, key):
        model = nnx.merge(graphdef, params, rest)
        return flow_matching_loss(model, obs, actions, key, cfg.max_prefix, cfg.prefix_decay)

    @jax.jit
    def epoch(params, rest, opt_state, obs, chunks, key):
        k_perm, k_steps = jax.random.split(key)
        perm = jax.random.permutation(k_perm, obs.shape[0])[: n_batches * cfg.batch_size]
        perm = perm.reshape(n_batches, cfg.batch_size)  # [n_batches, batch]

        def step(carry, xs):
            params, opt_state = carry
            idx, k = xs
            loss, grads = jax.value_and_grad(loss_fn)(params, rest, obs[idx], chunks[idx], k)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), (perm, jax.random.split(k_steps, n_batches))
        )
        return params, opt_state, losses.mean()

    return epoch, tx


def _save_train_state(path: Path, params, rest, opt_state, epoch: int, history: list, wall: float) -> None:
    from flax import serialization

    leaves = jax.tree.leaves((params, rest, opt_state))
    blob = serialization.msgpack_serialize({"leaves": {str(i): np.asarray(x) for i, x in enumerate(leaves)},
                                            "epoch": epoch})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps({"epoch": epoch, "history": history, "wall_s": wall}, indent=2))


def _load_train_state(path: Path, params, rest, opt_state):
    from flax import serialization

    restored = serialization.msgpack_restore(path.read_bytes())
    treedef = jax.tree.structure((params, rest, opt_state))
    leaves = [jnp.asarray(restored["leaves"][str(i)]) for i in range(treedef.num_leaves)]
    params, rest, opt_state = jax.tree.unflatten(treedef, leaves)
    meta = json.loads(path.with_suffix(".json").read_text())
    return params, rest, opt_state, int(restored["epoch"]), meta["history"], meta["wall_s"]


def run_epochs(one_epoch, params, rest, opt_state, epochs: int, seed: int, work_dir, *, label: str, console=None):
    """The resumable epoch loop of every trainer here (BC, training-time RTC, the A2C2 and VLASH fine-tunes):
    ``one_epoch(params, rest, opt_state, key) -> (params, opt_state, mean loss)`` for epochs ``start..epochs``,
    where ``start`` is read back from ``work_dir/<label>_train.msgpack`` (written after every epoch), with live
    per-epoch metrics in ``work_dir/<label>_metrics.jsonl`` (rtcbench.policy.curves) and a progress bar.
    Epoch ``ep`` uses ``fold_in(PRNGKey(seed), ep)``, so a resumed run continues the same stream.
    Returns (params, rest, history, wall seconds of training)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rtcbench.policy.curves import append_metrics, write_metrics

    state_path = Path(work_dir) / f"{label}_train.msgpack"
    start, history, wall = 0, [], 0.0
    if state_path.exists():
        params, rest, opt_state, start, history, wall = _load_train_state(state_path, params, rest, opt_state)
    metrics_path = Path(work_dir) / f"{label}_metrics.jsonl"
    write_metrics(metrics_path, [{"stage": label, **r} for r in history])
    key = jax.random.PRNGKey(seed)
    with Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(label, total=epochs, completed=start, info="compiling")
        for ep in range(start, epochs):
            t0 = time.perf_counter()
            params, opt_state, loss = one_epoch(params, rest, opt_state, jax.random.fold_in(key, ep))
            loss = float(loss)
            wall += time.perf_counter() - t0
            history.append({"epoch": ep + 1, "loss": loss, "wall_s": round(wall, 1)})
            _save_train_state(state_path, params, rest, opt_state, ep + 1, history, wall)
            append_metrics(metrics_path, {"stage": label, **history[-1]})
            progress.update(task, completed=ep + 1, info=f"loss {loss:.4f}")
    return params, rest, history, wall


def train_flow_policy(model, obs: np.ndarray, chunks: np.ndarray, cfg: FlowTrainConfig, work_dir, *,
                      label: str = "bc", console=None):
    """Train ``model`` in place on (obs, chunks); resumes from ``work_dir/<label>_train.msgpack``.

    Returns (model, info) with info = {epochs, steps, final_loss, history, train_wall_s, config}.
    """
    import flax.nnx as nnx

    n = obs.shape[0]
    if n < cfg.batch_size:
        from rtcbench.errors import UserError

        raise UserError(f"the data set has {n} samples, fewer than one batch of {cfg.batch_size}")
    n_batches = n // cfg.batch_size
    total_steps = n_batches * cfg.epochs
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    epoch_fn, tx = make_train_epoch(cfg, graphdef, n, total_steps)
    opt_state = tx.init(params)
    obs_d, chunks_d = jnp.asarray(obs), jnp.asarray(chunks)

    def one_epoch(params, rest, opt_state, key):
        return epoch_fn(params, rest, opt_state, obs_d, chunks_d, key)

    params, rest, history, wall = run_epochs(one_epoch, params, rest, opt_state, cfg.epochs, cfg.seed, work_dir,
                                             label=label, console=console)
    model = nnx.merge(graphdef, params, rest)
    info = {"epochs": cfg.epochs, "steps": total_steps, "samples": n, "final_loss": history[-1]["loss"],
            "history": history, "train_wall_s": wall, "config": asdict(cfg)}
    return model, info
