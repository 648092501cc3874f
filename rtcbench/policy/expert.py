"""PPO / RPO experts: the first stage of the policy pipeline (DESIGN.md §6).

An expert is a Gaussian MLP actor plus an MLP critic, trained with PPO (RPO when ``rpo_alpha > 0``:
the actor mean is perturbed by U(-alpha, alpha) inside the loss) on Kinetix's built-in reward (goal,
death and the dense distance-shaping term). Action noise of 0.1 std is added to every executed action,
as in evaluation. Style follows purejaxrl: ``make_train_updates(config, level)`` returns a pure jitted
function that runs a block of updates; the Python driver loops over blocks, shows progress, and writes
a resumable checkpoint after each block.

Expert checkpoints live outside the repository (``runs/``): ``expert.msgpack`` (params, optimiser
state, rng, update count; flax msgpack, never pickle) and ``expert.json`` (config, measured solve rate).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.levels import ACTION_NOISE_STD


@dataclass(frozen=True)
class ExpertConfig:
    """Static PPO/RPO hyper-parameters (DESIGN.md §6: gamma 0.995, lambda 0.9, lr 3e-4, RPO alpha 0.3)."""

    level: str
    total_steps: int = 1_000_000
    num_envs: int = 128
    num_steps: int = 128
    update_epochs: int = 4
    num_minibatches: int = 8
    gamma: float = 0.995
    gae_lambda: float = 0.9
    lr: float = 3e-4
    clip_eps: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    rpo_alpha: float = 0.3
    hidden: int = 256
    init_log_std: float = -0.5
    action_noise: float = ACTION_NOISE_STD
    # Shaping against chatter: reward -= action_rate_penalty * ||m_t - m_{t-1}||^2, where m is the clipped
    # actor mean (the deterministic expert action, not the exploration noise). 0 = the paper's setup.
    action_rate_penalty: float = 0.0
    seed: int = 0

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.steps_per_update)


# ---------------------------------------------------------------- networks (plain pytrees of arrays)


def _dense_init(key, n_in, n_out, scale):
    w = jax.nn.initializers.orthogonal(scale)(key, (n_in, n_out))
    return {"w": w, "b": jnp.zeros(n_out)}


def init_expert_params(key: jax.Array, obs_dim: int, action_dim: int, cfg: ExpertConfig) -> dict:
    k = jax.random.split(key, 6)
    h = cfg.hidden
    return {
        "actor": [
            _dense_init(k[0], obs_dim, h, np.sqrt(2)),
            _dense_init(k[1], h, h, np.sqrt(2)),
            _dense_init(k[2], h, action_dim, 0.01),
        ],
        "log_std": jnp.full((action_dim,), cfg.init_log_std),
        "critic": [
            _dense_init(k[3], obs_dim, h, np.sqrt(2)),
            _dense_init(k[4], h, h, np.sqrt(2)),
            _dense_init(k[5], h, 1, 1.0),
        ],
    }


def _mlp(layers: list, x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def actor_mean(params: dict, obs: jax.Array) -> jax.Array:
    """obs [..., O] -> Gaussian mean [..., A] (unclipped)."""
    return _mlp(params["actor"], obs)


def critic_value(params: dict, obs: jax.Array) -> jax.Array:
    """obs [..., O] -> value [...]."""
    return _mlp(params["critic"], obs)[..., 0]


def expert_action(params: dict, obs: jax.Array) -> jax.Array:
    """The deterministic expert action used for evaluation and data: clip(mean, -1, 1). [..., A]"""
    return jnp.clip(actor_mean(params, obs), -1.0, 1.0)


def _log_prob(mean, log_std, a):
    return jnp.sum(-0.5 * ((a - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


# ---------------------------------------------------------------- training


def make_optimizer(cfg: ExpertConfig):
    import optax

    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr, eps=1e-5))


def make_train_updates(cfg: ExpertConfig, level, n_updates: int):
    """-> jitted ``train_updates(runner) -> (runner, metrics)`` running n_updates PPO updates.

    runner = (params, opt_state, env_state, obs [N, O], prev_mean [N, A], rng). metrics are per update
    [n_updates]. prev_mean is the previous step's clipped actor mean (zero after a reset), used only by
    ``action_rate_penalty``.
    """
    import optax

    tx = make_optimizer(cfg)
    N, T = cfg.num_envs, cfg.num_steps
    minibatch = N * T // cfg.num_minibatches

    def env_step(runner, _):
        params, opt_state, env_state, obs, prev_mean, rng = runner
        rng, k_act, k_noise, k_env = jax.random.split(rng, 4)
        mean = actor_mean(params, obs)  # [N, A]
        raw = mean + jnp.exp(params["log_std"]) * jax.random.normal(k_act, mean.shape)  # [N, A]
        logp = _log_prob(mean, params["log_std"], raw)  # [N]
        value = critic_value(params, obs)  # [N]
        executed = jnp.clip(raw + cfg.action_noise * jax.random.normal(k_noise, raw.shape), -1.0, 1.0)
        next_obs, env_state, reward, done, info = jax.vmap(level.step)(
            jax.random.split(k_env, N), env_state, executed
        )
        clipped = jnp.clip(mean, -1.0, 1.0)  # [N, A]
        if cfg.action_rate_penalty > 0:
            reward = reward - cfg.action_rate_penalty * jnp.sum((clipped - prev_mean) ** 2, axis=-1)
        prev_mean = jnp.where(done[:, None], 0.0, clipped)
        transition = (obs, raw, logp, value, reward, done, info["GoalR"] > 0)
        return (params, opt_state, env_state, next_obs, prev_mean, rng), transition

    def loss_fn(params, batch, key):
        obs, raw, old_logp, old_value, adv, target = batch
        mean = actor_mean(params, obs)
        if cfg.rpo_alpha > 0:
            mean = mean + jax.random.uniform(key, mean.shape, minval=-cfg.rpo_alpha, maxval=cfg.rpo_alpha)
        logp = _log_prob(mean, params["log_std"], raw)
        ratio = jnp.exp(logp - old_logp)
        adv_n = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.minimum(ratio * adv_n, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv_n).mean()
        value = critic_value(params, obs)
        v_clipped = old_value + jnp.clip(value - old_value, -cfg.clip_eps, cfg.clip_eps)
        v_loss = 0.5 * jnp.maximum((value - target) ** 2, (v_clipped - target) ** 2).mean()
        entropy = jnp.sum(params["log_std"] + 0.5 * jnp.log(2 * jnp.pi * jnp.e))
        return pg + cfg.vf_coef * v_loss - cfg.ent_coef * entropy, (pg, v_loss)

    def update(runner, _):
        runner, traj = jax.lax.scan(env_step, runner, None, T)
        obs_t, raw_t, logp_t, value_t, reward_t, done_t, goal_t = traj  # each [T, N, ...]
        params, opt_state, env_state, last_obs, prev_mean, rng = runner
        last_value = critic_value(params, last_obs)  # [N]

        def gae_step(carry, x):
            gae, next_value = carry
            value, reward, done = x
            delta = reward + cfg.gamma * next_value * (1 - done) - value
            gae = delta + cfg.gamma * cfg.gae_lambda * (1 - done) * gae
            return (gae, value), gae

        _, adv_t = jax.lax.scan(
            gae_step, (jnp.zeros(N), last_value), (value_t, reward_t, done_t.astype(jnp.float32)), reverse=True
        )
        target_t = adv_t + value_t
        flat = jax.tree.map(
            lambda a: a.reshape(N * T, *a.shape[2:]), (obs_t, raw_t, logp_t, value_t, adv_t, target_t)
        )

        def epoch(carry, _):
            params, opt_state, rng = carry
            rng, k_perm, k_rpo = jax.random.split(rng, 3)
            perm = jax.random.permutation(k_perm, N * T)
            batches = jax.tree.map(lambda a: a[perm].reshape(cfg.num_minibatches, minibatch, *a.shape[1:]), flat)

            def minibatch_step(carry, xs):
                params, opt_state = carry
                batch, key = xs
                (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            keys = jax.random.split(k_rpo, cfg.num_minibatches)
            (params, opt_state), losses = jax.lax.scan(minibatch_step, (params, opt_state), (batches, keys))
            return (params, opt_state, rng), losses.mean()

        (params, opt_state, rng), losses = jax.lax.scan(
            epoch, (params, opt_state, rng), None, cfg.update_epochs
        )
        n_done = done_t.sum()
        metrics = {
            "loss": losses.mean(),
            "episodes": n_done,
            "solved": (done_t & goal_t).sum(),
            "reward": reward_t.sum(0).mean(),
        }
        return (params, opt_state, env_state, last_obs, prev_mean, rng), metrics

    @jax.jit
    def train_updates(runner):
        return jax.lax.scan(update, runner, None, n_updates)

    return train_updates


def init_runner(cfg: ExpertConfig, level, params=None, opt_state=None, rng=None):
    """Fresh env states for cfg.num_envs envs, with new or resumed params/optimiser state."""
    key = jax.random.PRNGKey(cfg.seed) if rng is None else rng
    key, k_init, k_reset = jax.random.split(key, 3)
    if params is None:
        params = init_expert_params(k_init, level.obs_dim, level.action_dim, cfg)
        opt_state = make_optimizer(cfg).init(params)
    obs, env_state = jax.vmap(level.reset)(jax.random.split(k_reset, cfg.num_envs))
    prev_mean = jnp.zeros((cfg.num_envs, level.action_dim))
    return (params, opt_state, env_state, obs, prev_mean, key)


# ---------------------------------------------------------------- checkpoints (msgpack, resumable)


def expert_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out = Path(out_dir)
    return out / "expert.msgpack", out / "expert.json"


def save_expert(out_dir, cfg: ExpertConfig, params, opt_state, rng, update: int, info: dict) -> None:
    from flax import serialization

    weights, sidecar = expert_paths(out_dir)
    weights.parent.mkdir(parents=True, exist_ok=True)
    blob = serialization.to_bytes({"params": params, "opt_state": opt_state, "rng": rng, "update": update})
    tmp = weights.with_suffix(".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, weights)
    meta = {"config": asdict(cfg), "update": update, **info}
    tmp = sidecar.with_suffix(".jtmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, sidecar)


def load_expert(out_dir, level) -> tuple[ExpertConfig, dict, object, jax.Array, int, dict]:
    """-> (cfg, params, opt_state, rng, update, sidecar). Raises UserError if missing or malformed."""
    from flax import serialization

    from rtcbench.errors import UserError

    weights, sidecar = expert_paths(out_dir)
    if not weights.exists() or not sidecar.exists():
        raise UserError("no expert checkpoint here (expected expert.msgpack + expert.json)", path=str(out_dir))
    meta = json.loads(sidecar.read_text())
    cfg = ExpertConfig(**meta["config"])
    params = init_expert_params(jax.random.PRNGKey(0), level.obs_dim, level.action_dim, cfg)
    template = {"params": params, "opt_state": make_optimizer(cfg).init(params), "rng": jax.random.PRNGKey(0),
                "update": 0}
    try:
        restored = serialization.from_bytes(template, weights.read_bytes())
    except Exception as exc:
        raise UserError(f"expert weights do not fit level {level.name!r}: {exc}", path=str(weights)) from None
    return cfg, restored["params"], restored["opt_state"], restored["rng"], int(restored["update"]), meta


# ---------------------------------------------------------------- driver


def train_expert(cfg: ExpertConfig, out_dir, *, eval_n: int = 512, updates_per_block: int = 4, console=None,
                 command: str = "", probe_lags: tuple[int, ...] = (), max_train_s: float | None = None) -> dict:
    """Train (or resume) an expert into ``out_dir``; evaluate it on eval_n rollouts; return its sidecar.

    ``max_train_s`` caps this call's training wall time (compile included): training stops after the
    block that crosses it (every call trains at least one block), the checkpoint keeps every finished
    update (a later call resumes), and the sidecar records ``stopped_at_time_limit`` and the steps
    actually trained. For time-boxed machines.
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rtcbench.levels import load_level
    from rtcbench.policy.evaluate import evaluate_expert

    level = load_level(cfg.level)
    update, history, wall = 0, [], 0.0
    if expert_paths(out_dir)[0].exists():
        old_cfg, params, opt_state, rng, update, meta = load_expert(out_dir, level)
        if asdict(old_cfg) | {"total_steps": 0} != asdict(cfg) | {"total_steps": 0}:
            from rtcbench.errors import UserError

            raise UserError("an expert with a different config is already here; use another --out", path=str(out_dir))
        history, wall = meta.get("history", []), meta.get("train_wall_s", 0.0)
        runner = init_runner(cfg, level, params, opt_state, rng)
    else:
        runner = init_runner(cfg, level)
    blocks = {}
    call_t0 = time.perf_counter()
    stopped_at_limit = False
    with Progress(TextColumn("[bold]expert[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(cfg.level, total=cfg.num_updates, completed=update, info="compiling")
        while update < cfg.num_updates:
            n = min(updates_per_block, cfg.num_updates - update)
            if n not in blocks:
                blocks[n] = make_train_updates(cfg, level, n)
            t0 = time.perf_counter()
            runner, metrics = blocks[n](runner)
            metrics = jax.device_get(metrics)
            wall += time.perf_counter() - t0
            update += n
            eps, solved = float(metrics["episodes"].sum()), float(metrics["solved"].sum())
            rate = solved / max(eps, 1.0)
            # reward: mean over the block's updates of the per-env reward summed over one rollout of num_steps
            # (the shaped training reward, action-rate penalty included)
            history.append({"update": update, "steps": update * cfg.steps_per_update, "train_solve_frac": rate,
                            "episodes": eps, "reward": float(metrics["reward"].mean()), "wall_s": round(wall, 1)})
            params, opt_state, _, _, _, rng = runner
            save_expert(out_dir, cfg, params, opt_state, rng, update,
                        {"history": history, "train_wall_s": wall, "command": command})
            progress.update(task, completed=update,
                            info=f"steps {update * cfg.steps_per_update:,}  train solve {rate:.2f}")
            # The limit is checked after each block, so every call trains at least one block (a check before
            # the first block would make a short limit race the set-up and train nothing).
            if (max_train_s is not None and update < cfg.num_updates
                    and time.perf_counter() - call_t0 >= max_train_s):
                stopped_at_limit = True
                break
    params, opt_state, _, _, _, rng = runner
    t0 = time.perf_counter()
    solve = evaluate_expert(level, params, eval_n, seed=cfg.seed + 10_000)
    info = {"history": history, "train_wall_s": wall, "eval_wall_s": time.perf_counter() - t0,
            "solve_rate": solve, "command": command, "trained_steps": update * cfg.steps_per_update,
            "stopped_at_time_limit": stopped_at_limit}
    # Delay-sensitivity probe: the same expert acting on observations `lag` steps old.
    for lag in probe_lags:
        info[f"solve_rate_obs_lag{lag}"] = evaluate_expert(level, params, eval_n, seed=cfg.seed + 10_000, obs_lag=lag)
    save_expert(out_dir, cfg, params, opt_state, rng, update, info)
    return info
