"""A small resumable training loop for the companion models of A2C2 and VLASH (rtcbench.policy.a2c2, .vlash).

Same conventions as BC (`rtcbench.policy.bc.train_flow_policy`): AdamW with linear warm-up and cosine decay
to 0.1 lr, global-norm clip, one jitted scan per epoch over shuffled batches, a resumable state
``<work>/<label>_train.msgpack`` written after each epoch and live per-epoch metrics
``<work>/<label>_metrics.jsonl`` (rtcbench.policy.curves).

``loss_fn(model, aux, data, idx, key) -> scalar`` gets the module being trained, ``aux`` (a pytree of traced
constants, e.g. a frozen base policy's state), the whole data set (a dict of device arrays) and the batch's
sample indices [batch]; it draws whatever randomness it needs from ``key``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 4
    batch_size: int = 512
    lr: float = 1e-4
    warmup_steps: int = 200
    weight_decay: float = 1e-2
    clip_norm: float = 10.0
    seed: int = 0


def train_module(model, loss_fn, aux, data: dict, n_samples: int, cfg: FinetuneConfig, work_dir, *, label: str,
                 console=None):
    """Train the nnx ``model``'s Params on ``loss_fn``; resumes from ``work_dir/<label>_train.msgpack``.

    Returns (model, info) with info = {epochs, steps, samples, final_loss, history, train_wall_s, config}.
    """
    import flax.nnx as nnx
    import optax

    from rtcbench.errors import UserError
    from rtcbench.policy.bc import FlowTrainConfig, make_optimizer, run_epochs

    if n_samples < cfg.batch_size:
        raise UserError(f"the data set has {n_samples} samples, fewer than one batch of {cfg.batch_size}",
                        field="--batch-size")
    n_batches = n_samples // cfg.batch_size
    total_steps = n_batches * cfg.epochs
    tx = make_optimizer(FlowTrainConfig(lr=cfg.lr, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
                                        clip_norm=cfg.clip_norm), total_steps)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)

    def loss_of(params, rest, aux, data, idx, key):
        return loss_fn(nnx.merge(graphdef, params, rest), aux, data, idx, key)

    @jax.jit
    def epoch(params, rest, opt_state, aux, data, key):
        k_perm, k_steps = jax.random.split(key)
        perm = jax.random.permutation(k_perm, n_samples)[: n_batches * cfg.batch_size].reshape(n_batches, -1)

        def step(carry, xs):
            params, opt_state = carry
            idx, k = xs
            loss, grads = jax.value_and_grad(loss_of)(params, rest, aux, data, idx, k)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state),
                                                   (perm, jax.random.split(k_steps, n_batches)))
        return params, opt_state, losses.mean()

    data_d = {k: jnp.asarray(v) for k, v in data.items()}

    def one_epoch(params, rest, opt_state, key):
        return epoch(params, rest, opt_state, aux, data_d, key)

    params, rest, history, wall = run_epochs(one_epoch, params, rest, opt_state, cfg.epochs, cfg.seed, work_dir,
                                             label=label, console=console)
    model = nnx.merge(graphdef, params, rest)
    info = {"epochs": cfg.epochs, "steps": total_steps, "samples": n_samples, "final_loss": history[-1]["loss"],
            "history": history, "train_wall_s": wall, "config": asdict(cfg)}
    return model, info


def episode_reach(chunks: np.ndarray) -> np.ndarray:
    """How many of the following samples belong to the same episode, per sample: [M] int.

    The collected data (rtcbench.policy.collect) concatenates episodes and stores no boundaries, but within
    an episode consecutive samples are windows of one action sequence: chunks[i, 1:] == chunks[i + 1, :-1]
    exactly (the same float32 values, padding included). Across a boundary that holds only if the new
    episode's first H - 1 actions all equal the old one's last action, bit for bit. Needs H >= 2.
    """
    M, H = chunks.shape[:2]
    if H < 2:
        raise ValueError("episode boundaries can only be read from chunks of H >= 2")
    cont = np.zeros(M, bool)
    cont[:-1] = (chunks[:-1, 1:] == chunks[1:, :-1]).all(axis=(1, 2))
    reach = np.zeros(M, np.int32)
    for i in range(M - 2, -1, -1):
        reach[i] = reach[i + 1] + 1 if cont[i] else 0
    return reach
