"""Expert data for behaviour cloning: (observation, next H expert actions) pairs, made as the reference
pipeline makes them (docs/DESIGN.md §6, step 2).

**The mixture.** The data come from a population of experts (``train-expert --seeds K``). A seed
*qualifies* when at least one of its periodic checkpoints reached a training solve rate >=
MIN_EXPERT_SOLVE_RATE (0.65, the reference's; ``min_train_solve`` changes it, for smoke tests of tiny
experts, and the sidecar records it); its qualifying checkpoints are those that did. The training solve
rate is the share of training episodes (with the exploration noise) that ended in success in the block
that ended at the checkpoint. Collection runs in rounds
of ``n_envs`` episodes: at each round's reset every environment draws one qualifying seed uniformly, then
one of that seed's qualifying checkpoints uniformly, and that expert acts for the whole episode. Only the
first episode of each environment in a round is used, so the draw is exactly per episode.

**Labels.** ``label="sample"`` (default, the reference's): the label is a draw from the expert's own action
distribution, clip(N(mean, std)) with its learned state-independent std (`rtcbench.policy.expert`), and
that draw is what the expert executes (plus the 0.1-std action noise every executed action gets).
``label="mean"``: the label is clip(mean) and the executed action clip(mean) + noise (DART-style, the
project's earlier pipeline). Sampled labels carry the expert's spread into the data; mean labels remove it.

**Episodes kept.** ``keep="all"`` (default, the reference's) keeps every first episode that ends within
``max_steps``; ``keep="success"`` only those ending in success (``GoalR``). A chunk that would cross the
end of its episode is padded with the episode's last action.

Data file: ``data.npz`` (numpy arrays, loaded with allow_pickle=False) + ``data.json`` (provenance: the
experts, their qualifying checkpoints, label and keep modes, and each expert's share of the episodes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.errors import UserError

MIN_EXPERT_SOLVE_RATE = 0.65
KEEP_MODES = ("all", "success")


def first_episode_chunks(obs, actions, done, goal, H: int, keep: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """obs [T, B, O], actions [T, B, A], done/goal [T, B] -> (obs [M, O], chunks [M, H, A], per-env info).

    Each env's first episode (steps 0..first done) is kept if it ends within T and, with keep="success",
    ends in success. info: ``kept`` [B] bool, ``solved`` [B] bool, ``length`` [B] int (T if it did not end).
    """
    T, B = done.shape
    ended = done.any(axis=0)  # [B]
    first = np.where(ended, np.argmax(done, axis=0), T - 1)  # [B]
    solved = ended & goal[first, np.arange(B)]
    kept = ended & (solved if keep == "success" else True)
    keep_obs, keep_chunks = [], []
    for b in np.flatnonzero(kept):
        L = int(first[b]) + 1
        ep_actions = actions[:L, b]  # [L, A]
        idx = np.minimum(np.arange(L)[:, None] + np.arange(H)[None, :], L - 1)  # [L, H]
        keep_obs.append(obs[:L, b])
        keep_chunks.append(ep_actions[idx])
    info = {"kept": kept, "solved": solved, "length": np.where(ended, first + 1, T)}
    if not keep_obs:
        return np.zeros((0, obs.shape[-1]), np.float32), np.zeros((0, H, actions.shape[-1]), np.float32), info
    return np.concatenate(keep_obs).astype(np.float32), np.concatenate(keep_chunks).astype(np.float32), info


def qualifying_experts(expert_paths: list, min_train_solve: float = MIN_EXPERT_SOLVE_RATE) -> tuple[list, list]:
    """-> (qualifying, rejected): one dict per seed folder found under the given paths (an expert folder or
    a population folder of ``seed_*/``), with its sidecar, config and qualifying checkpoints."""
    from rtcbench.policy.expert import config_from_sidecar, read_expert_sidecar, seed_dirs

    found = []
    for path in expert_paths:
        dirs = seed_dirs(path)
        if not dirs:
            raise UserError("no expert here (expected expert.json, or seed_*/expert.json for a population)",
                            path=str(path), field="--expert")
        found += dirs
    if len({d.resolve() for d in found}) != len(found):
        raise UserError("the same expert folder is given twice", field="--expert")
    qualifying, rejected = [], []
    for d in found:
        meta = read_expert_sidecar(d)
        cfg = config_from_sidecar(meta["config"])
        checkpoints = [c for c in meta.get("checkpoints", []) if c["train_solve_frac"] >= min_train_solve]
        entry = {"dir": d, "meta": meta, "cfg": cfg, "checkpoints": checkpoints}
        (qualifying if checkpoints else rejected).append(entry)
    return qualifying, rejected


def collect(expert_paths: list, out_dir, *, H: int = 8, episodes: int = 1536, n_envs: int = 256,
            max_steps: int = 256, seed: int = 0, label: str = "sample", keep: str = "all",
            allow_single: bool = False, min_train_solve: float = MIN_EXPERT_SOLVE_RATE, command: str = "") -> dict:
    """Roll out the expert mixture and write ``out_dir/data.npz`` + ``data.json``; -> the sidecar dict."""
    import time

    from rtcbench.levels import load_level
    from rtcbench.policy.expert import LABELS, load_periodic_params, make_expert_rollout

    if label not in LABELS:
        raise UserError(f"unknown label mode {label!r}; allowed: {', '.join(LABELS)}", field="--label")
    if keep not in KEEP_MODES:
        raise UserError(f"unknown keep mode {keep!r}; allowed: {', '.join(KEEP_MODES)}", field="--keep")
    if not 0.0 <= min_train_solve <= 1.0:
        raise UserError(f"must be in [0, 1], got {min_train_solve}", field="--min-train-solve")
    qualifying, rejected = qualifying_experts(expert_paths, min_train_solve)
    if not qualifying:
        raise UserError(f"no expert has a checkpoint with training solve rate >= {min_train_solve}; train "
                        "longer (more --steps) or other seeds before collecting",
                        path=", ".join(str(e["dir"]) for e in rejected), field="--expert")
    if len(qualifying) < 2 and not allow_single:
        raise UserError(f"only {len(qualifying)} expert seed reached training solve rate >= {min_train_solve} "
                        f"({len(rejected)} did not); the data mixture needs >= 2 (train more seeds, or pass "
                        "--allow-single to clone one expert)", path=str(qualifying[0]["dir"]), field="--expert")
    levels = {e["cfg"].level for e in qualifying}
    inputs = {(e["cfg"].obs_history, e["cfg"].action_history, e["cfg"].hidden) for e in qualifying}
    if len(levels) != 1 or len(inputs) != 1:
        raise UserError(f"the experts differ in level or inputs (levels {sorted(levels)}, (obs_history, "
                        f"action_history, hidden) {sorted(inputs)}); collect one level's population at a time",
                        field="--expert")
    level_name = levels.pop()
    cfg = qualifying[0]["cfg"]
    level = load_level(level_name)

    # Candidates: every qualifying (seed, checkpoint), stacked [C, ...]; owner[c] is the seed index.
    candidates, owner = [], []
    for i, e in enumerate(qualifying):
        for c in e["checkpoints"]:
            candidates.append(load_periodic_params(e["dir"], c["file"], e["cfg"], level))
            owner.append(i)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *candidates)
    owner = np.asarray(owner)
    first_of_seed = np.searchsorted(owner, np.arange(len(qualifying)))  # [K]
    per_seed = np.bincount(owner, minlength=len(qualifying))  # [K]

    rollout = make_expert_rollout(level, cfg, n_envs, max_steps, label=label)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC011EC7]))
    t0 = time.perf_counter()
    all_obs, all_chunks = [], []
    n_rounds = -(-episodes // n_envs)
    ep_seed, ep_kept, ep_solved, ep_len, samples_of = [], [], [], [], np.zeros(len(qualifying), np.int64)
    for r in range(n_rounds):
        which_seed = rng.integers(0, len(qualifying), n_envs)  # [B]: uniform over qualifying seeds
        which = first_of_seed[which_seed] + (rng.random(n_envs) * per_seed[which_seed]).astype(int)  # [B]
        params = jax.tree.map(lambda a, w=jnp.asarray(which): a[w], stacked)  # every leaf [B, ...]
        traj = jax.device_get(rollout(params, jax.random.fold_in(jax.random.PRNGKey(seed), r)))
        obs, chunks, info = first_episode_chunks(np.asarray(traj["obs"]), np.asarray(traj["action"]),
                                                 np.asarray(traj["done"]), np.asarray(traj["goal"]), H, keep)
        all_obs.append(obs)
        all_chunks.append(chunks)
        n_take = min(n_envs, episodes - r * n_envs)  # the last round counts only what was asked for
        if n_take < n_envs:
            info["kept"][n_take:] = False
            lengths_kept = info["length"][info["kept"]]
            all_obs[-1] = obs[: int(lengths_kept.sum())]
            all_chunks[-1] = chunks[: int(lengths_kept.sum())]
        sl = slice(0, n_take)
        ep_seed.append(which_seed[sl])
        ep_kept.append(info["kept"][sl])
        ep_solved.append(info["solved"][sl])
        ep_len.append(info["length"][sl])
        np.add.at(samples_of, which_seed[sl][info["kept"][sl]], info["length"][sl][info["kept"][sl]])
    obs = np.concatenate(all_obs)
    chunks = np.concatenate(all_chunks)
    ep_seed, ep_kept = np.concatenate(ep_seed), np.concatenate(ep_kept)
    ep_solved, ep_len = np.concatenate(ep_solved), np.concatenate(ep_len)
    if obs.shape[0] == 0:
        raise UserError(f"the experts produced no episode to keep (keep={keep}) in {episodes} episodes",
                        field="--expert")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "data.tmp.npz"
    np.savez(tmp, obs=obs, chunks=chunks)
    os.replace(tmp, out / "data.npz")
    experts = []
    for i, e in enumerate(qualifying):
        mine = ep_seed == i
        experts.append({"dir": str(e["dir"]), "seed": e["cfg"].seed, "solve_rate": e["meta"].get("solve_rate"),
                        "trained_steps": e["meta"].get("trained_steps"),
                        "qualifying_checkpoints": [{k: c[k] for k in ("file", "steps", "train_solve_frac")}
                                                   for c in e["checkpoints"]],
                        "episodes": int(mine.sum()), "share": float(mine.mean()),
                        "solve_rate_in_data": float(ep_solved[mine].mean()) if mine.any() else None,
                        "samples": int(samples_of[i])})
    info = {"level": level_name, "H": H, "label": label, "keep": keep, "n_experts": len(qualifying),
            "experts": experts,
            "rejected_experts": [{"dir": str(e["dir"]), "seed": e["cfg"].seed,
                                  "best_train_solve_frac": max((c["train_solve_frac"]
                                                                for c in e["meta"].get("checkpoints", [])),
                                                               default=None)} for e in rejected],
            "min_train_solve_frac": min_train_solve, "expert_inputs": {"obs_history": cfg.obs_history,
                                                                             "action_history": cfg.action_history},
            "episodes": int(ep_seed.size), "kept_episodes": int(ep_kept.sum()),
            "successful_episodes": int(ep_solved.sum()), "episode_solve_rate": float(ep_solved.mean()),
            "mean_episode_length": float(ep_len.mean()), "samples": int(obs.shape[0]),
            "n_envs": n_envs, "max_steps": max_steps, "seed": seed,
            "collect_wall_s": round(time.perf_counter() - t0, 1), "command": command}
    (out / "data.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def load_dataset(data_dir) -> tuple[np.ndarray, np.ndarray, dict]:
    """-> (obs [M, O], chunks [M, H, A], meta). Raises UserError if missing."""
    data_dir = Path(data_dir)
    if not (data_dir / "data.npz").exists():
        raise UserError("no data.npz here (run `rtcbench policy collect` first)", path=str(data_dir))
    with np.load(data_dir / "data.npz", allow_pickle=False) as f:
        obs, chunks = f["obs"], f["chunks"]
    meta = json.loads((data_dir / "data.json").read_text())
    return obs, chunks, meta
