"""PPO / RPO experts: the first stage of the policy pipeline (docs/DESIGN.md §6), and the one home of
everything about an expert: its inputs, network, training, checkpoints and closed-loop rollouts.

An expert is a Gaussian MLP actor plus an MLP critic, trained with PPO (RPO when ``rpo_alpha > 0``:
the actor mean is perturbed by U(-alpha, alpha) inside the loss) on Kinetix's built-in reward (goal,
death and the dense distance-shaping term). Action noise of 0.1 std is added to every executed action,
as in evaluation. Style follows purejaxrl: ``make_train_updates(config, level)`` returns a pure jitted
function that runs a block of updates; the Python driver loops over blocks, shows progress, and writes
a resumable checkpoint after each block.

**A population of seeds.** ``train_population`` trains K seeds of one level in one process, vmapped
over a leading seed axis: one compiled program steps K x num_envs environments. On the 2-core CPU that is
no slower per seed than K sequential runs and compiles once; on a GPU it is K times the batch for free.

**Inputs.** The actor and critic see ``expert_input``: the last ``obs_history`` observations (oldest
first; after a reset, the first observation repeated) and, with ``action_history``, the previous
executed action (zero after a reset). ``obs_history=1, action_history=False`` is the bare observation.
The reference pipeline's experts use 4 observations plus the previous action.

**Distribution.** The actor is Gaussian with a learned, state-independent ``log_std``; the executed action
is ``clip(raw + 0.1 noise, -1, 1)``. So the expert's own action distribution is clip(N(mean, std)), and
``expert_action(..., label="sample")`` draws from it (``"mean"``: the deterministic clip(mean)).

Checkpoints live outside the repository (``runs/``). A seed's folder holds ``expert.msgpack`` (params,
optimiser state, rng, update count; flax msgpack, never pickle), ``expert.json`` (config, history, measured
solve rate, the periodic checkpoints) and ``checkpoints/steps_NNNNNNNNN.msgpack`` (params only), written
every ``checkpoint_every`` steps with the training solve rate of the block that ended there. A population
folder holds one ``seed_<s>/`` folder per seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.errors import UserError
from rtcbench.levels import ACTION_NOISE_STD
from rtcbench.policy.evaluate import DEFAULT_MAX_STEPS, action_chatter, first_episode_outcome, solve_summary


@dataclass(frozen=True)
class ExpertConfig:
    """Static PPO/RPO hyper-parameters (docs/DESIGN.md §6: gamma 0.995, lambda 0.9, lr 3e-4, RPO alpha 0.3)."""

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
    # The expert's inputs (module docstring): the last obs_history observations, plus the previous action.
    obs_history: int = 1
    action_history: bool = False
    seed: int = 0

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.steps_per_update)


def config_from_sidecar(config: dict) -> ExpertConfig:
    """An ExpertConfig from a sidecar's ``config`` (older sidecars lack the input fields: bare observation)."""
    return ExpertConfig(**config)


# ---------------------------------------------------------------- inputs (observation and action history)


def input_dim(obs_dim: int, action_dim: int, cfg: ExpertConfig) -> int:
    return cfg.obs_history * obs_dim + (action_dim if cfg.action_history else 0)


def init_history(obs: jax.Array, action_dim: int, cfg: ExpertConfig) -> tuple[jax.Array, jax.Array]:
    """obs [B, O] -> history = (past observations [N, B, O] oldest first, previous action [B, A])."""
    past = jnp.broadcast_to(obs[None], (cfg.obs_history, *obs.shape))
    return past, jnp.zeros((obs.shape[0], action_dim))


def advance_history(history, next_obs: jax.Array, executed: jax.Array, done: jax.Array):
    """Push next_obs [B, O] and the executed action [B, A]; an env that just reset (done [B]) starts afresh
    (Kinetix auto-resets, so next_obs is then the new episode's first observation)."""
    past, _ = history
    shifted = jnp.concatenate([past[1:], next_obs[None]], axis=0)  # [N, B, O]
    past = jnp.where(done[None, :, None], jnp.broadcast_to(next_obs[None], past.shape), shifted)
    return past, jnp.where(done[:, None], 0.0, executed)


def expert_input(history, cfg: ExpertConfig) -> jax.Array:
    """history -> the actor's input [B, N*O (+A)]."""
    past, prev_action = history
    x = jnp.moveaxis(past, 0, 1).reshape(past.shape[1], -1)  # [B, N*O], oldest first
    return jnp.concatenate([x, prev_action], axis=-1) if cfg.action_history else x


# ---------------------------------------------------------------- networks (plain pytrees of arrays)


def _dense_init(key, n_in, n_out, scale):
    w = jax.nn.initializers.orthogonal(scale)(key, (n_in, n_out))
    return {"w": w, "b": jnp.zeros(n_out)}


def init_expert_params(key: jax.Array, obs_dim: int, action_dim: int, cfg: ExpertConfig) -> dict:
    """Parameters for a level's (obs_dim, action_dim); the input width follows cfg's history settings."""
    k = jax.random.split(key, 6)
    h, x_dim = cfg.hidden, input_dim(obs_dim, action_dim, cfg)
    return {
        "actor": [
            _dense_init(k[0], x_dim, h, np.sqrt(2)),
            _dense_init(k[1], h, h, np.sqrt(2)),
            _dense_init(k[2], h, action_dim, 0.01),
        ],
        "log_std": jnp.full((action_dim,), cfg.init_log_std),
        "critic": [
            _dense_init(k[3], x_dim, h, np.sqrt(2)),
            _dense_init(k[4], h, h, np.sqrt(2)),
            _dense_init(k[5], h, 1, 1.0),
        ],
    }


def _mlp(layers: list, x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def actor_mean(params: dict, x: jax.Array) -> jax.Array:
    """expert input [..., X] -> Gaussian mean [..., A] (unclipped)."""
    return _mlp(params["actor"], x)


def critic_value(params: dict, x: jax.Array) -> jax.Array:
    """expert input [..., X] -> value [...]."""
    return _mlp(params["critic"], x)[..., 0]


LABELS = ("mean", "sample")


def expert_action(params: dict, x: jax.Array, label: str = "mean", key: jax.Array | None = None) -> jax.Array:
    """The expert's action [..., A]: ``mean`` = clip(mean, -1, 1), deterministic (evaluation's default);
    ``sample`` = clip(mean + std * eps, -1, 1), a draw from the expert's own distribution (needs ``key``)."""
    mean = actor_mean(params, x)
    if label == "sample":
        mean = mean + jnp.exp(params["log_std"]) * jax.random.normal(key, mean.shape)
    elif label != "mean":
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    return jnp.clip(mean, -1.0, 1.0)


def _log_prob(mean, log_std, a):
    return jnp.sum(-0.5 * ((a - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


# ---------------------------------------------------------------- training


def make_optimizer(cfg: ExpertConfig):
    import optax

    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr, eps=1e-5))


def make_train_updates(cfg: ExpertConfig, level, n_updates: int, n_seeds: int | None = None):
    """-> jitted ``train_updates(runner) -> (runner, metrics)`` running n_updates PPO updates.

    runner = (params, opt_state, env_state, history, prev_mean [N, A], rng), history as `init_history`.
    metrics are per update [n_updates]. prev_mean is the previous step's clipped actor mean (zero after a
    reset), used only by ``action_rate_penalty``. With ``n_seeds``, every leaf of runner and metrics has a
    leading seed axis and the seeds train side by side (vmap).
    """
    import optax

    tx = make_optimizer(cfg)
    N, T = cfg.num_envs, cfg.num_steps
    minibatch = N * T // cfg.num_minibatches

    def env_step(runner, _):
        params, opt_state, env_state, history, prev_mean, rng = runner
        rng, k_act, k_noise, k_env = jax.random.split(rng, 4)
        x = expert_input(history, cfg)  # [N, X]
        mean = actor_mean(params, x)  # [N, A]
        raw = mean + jnp.exp(params["log_std"]) * jax.random.normal(k_act, mean.shape)  # [N, A]
        logp = _log_prob(mean, params["log_std"], raw)  # [N]
        value = critic_value(params, x)  # [N]
        executed = jnp.clip(raw + cfg.action_noise * jax.random.normal(k_noise, raw.shape), -1.0, 1.0)
        next_obs, env_state, reward, done, info = jax.vmap(level.step)(
            jax.random.split(k_env, N), env_state, executed
        )
        clipped = jnp.clip(mean, -1.0, 1.0)  # [N, A]
        if cfg.action_rate_penalty > 0:
            reward = reward - cfg.action_rate_penalty * jnp.sum((clipped - prev_mean) ** 2, axis=-1)
        prev_mean = jnp.where(done[:, None], 0.0, clipped)
        history = advance_history(history, next_obs, executed, done)
        transition = (x, raw, logp, value, reward, done, info["GoalR"] > 0)
        return (params, opt_state, env_state, history, prev_mean, rng), transition

    def loss_fn(params, batch, key):
        x, raw, old_logp, old_value, adv, target = batch
        mean = actor_mean(params, x)
        if cfg.rpo_alpha > 0:
            mean = mean + jax.random.uniform(key, mean.shape, minval=-cfg.rpo_alpha, maxval=cfg.rpo_alpha)
        logp = _log_prob(mean, params["log_std"], raw)
        ratio = jnp.exp(logp - old_logp)
        adv_n = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.minimum(ratio * adv_n, jnp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv_n).mean()
        value = critic_value(params, x)
        v_clipped = old_value + jnp.clip(value - old_value, -cfg.clip_eps, cfg.clip_eps)
        v_loss = 0.5 * jnp.maximum((value - target) ** 2, (v_clipped - target) ** 2).mean()
        entropy = jnp.sum(params["log_std"] + 0.5 * jnp.log(2 * jnp.pi * jnp.e))
        return pg + cfg.vf_coef * v_loss - cfg.ent_coef * entropy, (pg, v_loss)

    def update(runner, _):
        runner, traj = jax.lax.scan(env_step, runner, None, T)
        x_t, raw_t, logp_t, value_t, reward_t, done_t, goal_t = traj  # each [T, N, ...]
        params, opt_state, env_state, history, prev_mean, rng = runner
        last_value = critic_value(params, expert_input(history, cfg))  # [N]

        def gae_step(carry, xs):
            gae, next_value = carry
            value, reward, done = xs
            delta = reward + cfg.gamma * next_value * (1 - done) - value
            gae = delta + cfg.gamma * cfg.gae_lambda * (1 - done) * gae
            return (gae, value), gae

        _, adv_t = jax.lax.scan(
            gae_step, (jnp.zeros(N), last_value), (value_t, reward_t, done_t.astype(jnp.float32)), reverse=True
        )
        target_t = adv_t + value_t
        flat = jax.tree.map(
            lambda a: a.reshape(N * T, *a.shape[2:]), (x_t, raw_t, logp_t, value_t, adv_t, target_t)
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
        return (params, opt_state, env_state, history, prev_mean, rng), metrics

    def train_updates(runner):
        return jax.lax.scan(update, runner, None, n_updates)

    return jax.jit(train_updates if n_seeds is None else jax.vmap(train_updates))


def init_runner(cfg: ExpertConfig, level, params=None, opt_state=None, rng=None):
    """Fresh env states for cfg.num_envs envs, with new or resumed params/optimiser state."""
    key = jax.random.PRNGKey(cfg.seed) if rng is None else rng
    key, k_init, k_reset = jax.random.split(key, 3)
    if params is None:
        params = init_expert_params(k_init, level.obs_dim, level.action_dim, cfg)
        opt_state = make_optimizer(cfg).init(params)
    obs, env_state = jax.vmap(level.reset)(jax.random.split(k_reset, cfg.num_envs))
    history = init_history(obs, level.action_dim, cfg)
    prev_mean = jnp.zeros((cfg.num_envs, level.action_dim))
    return (params, opt_state, env_state, history, prev_mean, key)


# ---------------------------------------------------------------- checkpoints (msgpack, resumable)


def expert_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    out = Path(out_dir)
    return out / "expert.msgpack", out / "expert.json"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_expert(out_dir, cfg: ExpertConfig, params, opt_state, rng, update: int, info: dict) -> None:
    from flax import serialization

    weights, sidecar = expert_paths(out_dir)
    blob = serialization.to_bytes({"params": params, "opt_state": opt_state, "rng": rng, "update": update})
    _write_atomic(weights, blob)
    meta = {"config": asdict(cfg), "update": update, **info}
    _write_atomic(sidecar, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def save_periodic_checkpoint(out_dir, params, steps: int) -> str:
    """Params only, at ``checkpoints/steps_<steps>.msgpack``; -> the path relative to out_dir."""
    from flax import serialization

    rel = f"checkpoints/steps_{steps:09d}.msgpack"
    _write_atomic(Path(out_dir) / rel, serialization.to_bytes(params))
    return rel


def read_expert_sidecar(out_dir) -> dict:
    sidecar = expert_paths(out_dir)[1]
    if not sidecar.exists():
        raise UserError("no expert checkpoint here (expected expert.json; run `rtcbench policy train-expert`)",
                        path=str(out_dir))
    try:
        return json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"expert sidecar is not valid JSON: {exc}", path=str(sidecar)) from None


def load_expert(out_dir, level) -> tuple[ExpertConfig, dict, object, jax.Array, int, dict]:
    """-> (cfg, params, opt_state, rng, update, sidecar). Raises UserError if missing or malformed."""
    from flax import serialization

    weights, _ = expert_paths(out_dir)
    meta = read_expert_sidecar(out_dir)
    if not weights.exists():
        raise UserError("no expert weights here (expected expert.msgpack beside expert.json)", path=str(out_dir))
    cfg = config_from_sidecar(meta["config"])
    params = init_expert_params(jax.random.PRNGKey(0), level.obs_dim, level.action_dim, cfg)
    template = {"params": params, "opt_state": make_optimizer(cfg).init(params), "rng": jax.random.PRNGKey(0),
                "update": 0}
    try:
        restored = serialization.from_bytes(template, weights.read_bytes())
    except Exception as exc:
        raise UserError(f"expert weights do not fit level {level.name!r}: {exc}", path=str(weights)) from None
    return cfg, restored["params"], restored["opt_state"], restored["rng"], int(restored["update"]), meta


def load_periodic_params(out_dir, rel: str, cfg: ExpertConfig, level) -> dict:
    from flax import serialization

    path = Path(out_dir) / rel
    template = init_expert_params(jax.random.PRNGKey(0), level.obs_dim, level.action_dim, cfg)
    try:
        return serialization.from_bytes(template, path.read_bytes())
    except Exception as exc:
        raise UserError(f"expert checkpoint unreadable or does not fit level {level.name!r}: {exc}",
                        path=str(path)) from None


def seed_dirs(out_dir: str | os.PathLike) -> list[Path]:
    """The expert folders under ``out_dir``: ``out_dir`` itself if it is one, else its ``seed_*/`` folders."""
    out = Path(out_dir)
    if expert_paths(out)[1].exists():
        return [out]
    return sorted((p for p in out.glob("seed_*") if expert_paths(p)[1].exists()),
                  key=lambda p: int(p.name.split("_", 1)[1]) if p.name.split("_", 1)[1].isdigit() else 0)


# ---------------------------------------------------------------- closed-loop rollouts and evaluation


_ROLLOUT_CACHE: dict = {}


def make_expert_rollout(level, cfg: ExpertConfig, n_envs: int, max_steps: int, action_noise: float = ACTION_NOISE_STD,
                        obs_lag: int = 0, label: str = "mean"):
    """-> ``rollout(params, key) -> dict`` of [T, B, ...] arrays: obs (the env's observation, what a BC
    policy sees), action (the expert's ``label`` action, the BC label), done, goal. Executed actions are
    ``clip(action + noise)``.

    ``params`` may carry a leading env axis [B, ...] (one expert per env: the data mixture) or none (one
    expert for all). ``obs_lag`` > 0 makes the expert act on the inputs from obs_lag steps earlier (the
    first ones before that): a cheap probe of how much a level punishes acting on stale information.
    The jitted programs are cached per (level, input settings, sizes, lag, label, per-env or shared).
    """

    def rollout(params, key):
        per_env = params["log_std"].ndim == 2
        cache_key = (level.name, cfg.obs_history, cfg.action_history, cfg.hidden, n_envs, max_steps, action_noise,
                     obs_lag, label, per_env)
        if cache_key not in _ROLLOUT_CACHE:
            _ROLLOUT_CACHE[cache_key] = _build_expert_rollout(level, cfg, n_envs, max_steps, action_noise, obs_lag,
                                                              label, per_env)
        return _ROLLOUT_CACHE[cache_key](params, key)

    return rollout


def _build_expert_rollout(level, cfg, n_envs, max_steps, action_noise, obs_lag, label, per_env):
    def act(params, x, key):  # x [B, X] -> [B, A]
        if per_env:
            keys = jax.random.split(key, n_envs)
            return jax.vmap(lambda p, xi, k: expert_action(p, xi, label, k))(params, x, keys)
        return expert_action(params, x, label, key)

    def step(carry, key):
        env_state, obs, history, lagged, params = carry  # lagged [lag + 1, B, X]: oldest first
        k_label, k_noise, k_env = jax.random.split(key, 3)
        lagged = jnp.concatenate([lagged[1:], expert_input(history, cfg)[None]], axis=0)
        action = act(params, lagged[0], k_label)  # [B, A]
        executed = jnp.clip(action + action_noise * jax.random.normal(k_noise, action.shape), -1.0, 1.0)
        next_obs, env_state, _, done, info = jax.vmap(level.step)(jax.random.split(k_env, n_envs), env_state, executed)
        history = advance_history(history, next_obs, executed, done)
        out = {"obs": obs, "action": action, "done": done, "goal": info["GoalR"] > 0}
        return (env_state, next_obs, history, lagged, params), out

    @jax.jit
    def rollout(params, key):
        k_reset, k_steps = jax.random.split(key)
        obs, env_state = jax.vmap(level.reset)(jax.random.split(k_reset, n_envs))
        history = init_history(obs, level.action_dim, cfg)
        x0 = expert_input(history, cfg)
        lagged = jnp.broadcast_to(x0[None], (obs_lag + 1, *x0.shape))
        _, traj = jax.lax.scan(step, (env_state, obs, history, lagged, params), jax.random.split(k_steps, max_steps))
        return traj

    return rollout


def evaluate_expert(level, cfg: ExpertConfig, params, n: int, seed: int, max_steps: int = DEFAULT_MAX_STEPS,
                    obs_lag: int = 0) -> dict:
    """Closed-loop first-episode solve rate of an expert (its mean action), plus its action chatter."""
    rollout = make_expert_rollout(level, cfg, n, max_steps, obs_lag=obs_lag)
    traj = rollout(params, jax.random.PRNGKey(seed))
    solved, length = first_episode_outcome(traj["done"], traj["goal"])
    length = np.asarray(length)
    return {**solve_summary(np.asarray(solved), length), **action_chatter(np.asarray(traj["action"]), length)}


# ---------------------------------------------------------------- driver


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, k: int):
    return jax.tree.map(lambda a: a[k], tree)


def train_population(cfg: ExpertConfig, seeds: list[int], out_dirs: list[Path], *, eval_n: int = 512,
                     updates_per_block: int = 4, checkpoint_every: int = 250_000, console=None, command: str = "",
                     probe_lags: tuple[int, ...] = (), max_train_s: float | None = None) -> list[dict]:
    """Train (or resume) one expert per seed into its out_dir, all seeds vmapped in one program; evaluate
    each on eval_n rollouts; return their sidecars. ``cfg.seed`` is replaced by each seed.

    Every ``checkpoint_every`` environment steps (per seed) a params-only checkpoint is kept with the
    training solve rate of the block that reached it (``checkpoints`` in the sidecar): the data mixture
    draws among those that qualify. ``max_train_s`` caps this call's training wall time (compile included):
    training stops after the block that crosses it (every call trains at least one block), the checkpoint
    keeps every finished update (a later call resumes), and the sidecar records ``stopped_at_time_limit``.
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rtcbench.levels import load_level

    if len(seeds) != len(out_dirs) or not seeds:
        raise ValueError("one out_dir per seed")
    level = load_level(cfg.level)
    cfgs = [replace(cfg, seed=s) for s in seeds]
    runners, histories, walls, checkpoints, updates = [], [], [], [], []
    for c, out in zip(cfgs, out_dirs, strict=True):
        if expert_paths(out)[0].exists():
            old_cfg, params, opt_state, rng, update, meta = load_expert(out, level)
            if asdict(old_cfg) | {"total_steps": 0} != asdict(c) | {"total_steps": 0}:
                raise UserError("an expert with a different config is already here; use another --out", path=str(out))
            runners.append(init_runner(c, level, params, opt_state, rng))
            histories.append(meta.get("history", []))
            walls.append(meta.get("train_wall_s", 0.0))
            checkpoints.append(meta.get("checkpoints", []))
            updates.append(update)
        else:
            runners.append(init_runner(c, level))
            histories.append([])
            walls.append(0.0)
            checkpoints.append([])
            updates.append(0)
    if len(set(updates)) != 1:
        raise UserError(f"the seeds' checkpoints are at different updates {updates}; resume them one by one",
                        path=str(out_dirs[0].parent))
    update, K = updates[0], len(seeds)
    from rtcbench.policy.curves import append_metrics, plot_curves, write_metrics

    metrics_paths = [Path(out) / "metrics.jsonl" for out in out_dirs]  # live per-block metrics (policy.curves)
    for k, path in enumerate(metrics_paths):  # a resumed run starts from the sidecar's history: no block twice
        write_metrics(path, [{"stage": "expert", "seed": seeds[k], **r} for r in histories[k]])
    runner = _stack(runners)
    blocks = {}
    call_t0 = time.perf_counter()
    stopped_at_limit = False
    wall = 0.0
    with Progress(TextColumn("[bold]expert[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"{cfg.level} x{K} seeds", total=cfg.num_updates, completed=update, info="compiling")
        while update < cfg.num_updates:
            n = min(updates_per_block, cfg.num_updates - update)
            if n not in blocks:
                blocks[n] = make_train_updates(cfg, level, n, n_seeds=K)
            t0 = time.perf_counter()
            runner, metrics = blocks[n](runner)
            metrics = jax.device_get(metrics)  # each [K, n]
            dt = time.perf_counter() - t0
            wall += dt
            steps_before = update * cfg.steps_per_update
            update += n
            steps = update * cfg.steps_per_update
            rates = []
            for k, (c, out) in enumerate(zip(cfgs, out_dirs, strict=True)):
                eps, solved = float(metrics["episodes"][k].sum()), float(metrics["solved"][k].sum())
                rate = solved / max(eps, 1.0)
                rates.append(rate)
                walls[k] += dt
                # reward: mean over the block's updates of the per-env reward summed over one rollout of
                # num_steps (the shaped training reward, action-rate penalty included)
                histories[k].append({"update": update, "steps": steps, "train_solve_frac": rate, "episodes": eps,
                                     "reward": float(metrics["reward"][k].mean()), "wall_s": round(walls[k], 1)})
                append_metrics(metrics_paths[k], {"stage": "expert", "seed": seeds[k], **histories[k][-1]})
                params, opt_state, _, _, _, rng = _unstack(runner, k)
                if steps // checkpoint_every > steps_before // checkpoint_every or update >= cfg.num_updates:
                    rel = save_periodic_checkpoint(out, params, steps)
                    checkpoints[k] = [e for e in checkpoints[k] if e["file"] != rel]
                    checkpoints[k].append({"file": rel, "steps": steps, "update": update, "train_solve_frac": rate})
                save_expert(out, c, params, opt_state, rng, update,
                            {"history": histories[k], "train_wall_s": walls[k], "command": command,
                             "checkpoints": checkpoints[k], "population": {"seeds": seeds, "vmapped": True}})
            progress.update(task, completed=update, info=f"steps {steps:,}  train solve "
                            + " ".join(f"{r:.2f}" for r in rates))
            # The limit is checked after each block, so every call trains at least one block (a check before
            # the first block would make a short limit race the set-up and train nothing).
            if (max_train_s is not None and update < cfg.num_updates
                    and time.perf_counter() - call_t0 >= max_train_s):
                stopped_at_limit = True
                break
    infos = []
    for k, (c, out) in enumerate(zip(cfgs, out_dirs, strict=True)):
        params, opt_state, _, _, _, rng = _unstack(runner, k)
        t0 = time.perf_counter()
        solve = evaluate_expert(level, c, params, eval_n, seed=c.seed + 10_000)
        info = {"history": histories[k], "train_wall_s": walls[k], "eval_wall_s": time.perf_counter() - t0,
                "solve_rate": solve, "command": command, "trained_steps": update * cfg.steps_per_update,
                "stopped_at_time_limit": stopped_at_limit, "checkpoints": checkpoints[k],
                "population": {"seeds": seeds, "vmapped": True, "call_wall_s": round(wall, 1)}}
        # Delay-sensitivity probe: the same expert acting on observations `lag` steps old.
        for lag in probe_lags:
            info[f"solve_rate_obs_lag{lag}"] = evaluate_expert(level, c, params, eval_n, seed=c.seed + 10_000,
                                                               obs_lag=lag)
        save_expert(out, c, params, opt_state, rng, update, info)
        if histories[k]:
            plot_curves({"expert": histories[k]}, Path(out) / "curves", title=f"{cfg.level} expert, seed {c.seed}")
        infos.append(info)
    return infos

