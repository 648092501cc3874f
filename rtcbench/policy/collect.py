"""Expert data for behaviour cloning: (observation, next H expert actions) pairs.

The expert runs closed loop with 0.1-std action noise on the executed actions; the label is its clean
(noise-free, clipped) action, so the data covers the states the noise visits (DART-style). Only
episodes that end inside the collection window and in success (``GoalR``) are kept. A chunk that
would cross the end of its episode is padded with the episode's last action.

Only experts whose measured solve rate is >= MIN_EXPERT_SOLVE_RATE (0.65) are used; anything weaker is
refused with an error, never silently accepted.

Data file: ``data.npz`` (numpy arrays, loaded with allow_pickle=False) + ``data.json`` (provenance).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

from rtcbench.errors import UserError

MIN_EXPERT_SOLVE_RATE = 0.65


def chunks_from_trajectories(obs, actions, done, goal, H: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """obs [T, B, O], actions [T, B, A], done/goal [T, B] -> (obs [M, O], chunks [M, H, A], stats).

    Keeps the steps of episodes that end (done) within T with goal reached.
    """
    T, B = done.shape
    keep_obs, keep_chunks = [], []
    n_episodes = n_success = 0
    for b in range(B):
        ends = np.flatnonzero(done[:, b])
        start = 0
        for end in ends:
            n_episodes += 1
            if goal[end, b]:
                n_success += 1
                ep_actions = actions[start : end + 1, b]  # [L, A]
                L = ep_actions.shape[0]
                idx = np.minimum(np.arange(L)[:, None] + np.arange(H)[None, :], L - 1)  # [L, H]
                keep_obs.append(obs[start : end + 1, b])
                keep_chunks.append(ep_actions[idx])
            start = end + 1
    if not keep_obs:
        return (np.zeros((0, obs.shape[-1]), np.float32), np.zeros((0, H, actions.shape[-1]), np.float32),
                {"episodes": n_episodes, "successful_episodes": 0, "samples": 0})
    out_obs = np.concatenate(keep_obs).astype(np.float32)
    out_chunks = np.concatenate(keep_chunks).astype(np.float32)
    return out_obs, out_chunks, {"episodes": n_episodes, "successful_episodes": n_success,
                                 "samples": int(out_obs.shape[0])}


def collect(expert_dir, out_dir, *, H: int = 8, n_envs: int = 256, steps: int = 512, seed: int = 0,
            command: str = "") -> dict:
    """Roll out the expert in ``expert_dir`` and write ``out_dir/data.npz`` + ``data.json``."""
    import time

    from rtcbench.levels import load_level
    from rtcbench.policy.evaluate import make_expert_rollout
    from rtcbench.policy.expert import expert_paths, load_expert

    sidecar_path = expert_paths(expert_dir)[1]
    if not sidecar_path.exists():
        raise UserError("no expert checkpoint here (run `rtcbench policy train-expert` first)", path=str(expert_dir))
    meta = json.loads(sidecar_path.read_text())
    level_name = meta["config"]["level"]
    solve = meta.get("solve_rate")
    if solve is None:
        raise UserError("this expert has no measured solve rate yet (its training did not finish)",
                        path=str(sidecar_path), field="solve_rate")
    if solve["rate"] < MIN_EXPERT_SOLVE_RATE:
        raise UserError(
            f"expert solve rate {solve['rate']:.3f} (n={solve['n']}) is below the required "
            f"{MIN_EXPERT_SOLVE_RATE}; train a better expert (more --steps or another --seed) before collecting",
            path=str(sidecar_path), field="solve_rate",
        )
    level = load_level(level_name)
    _, params, _, _, _, _ = load_expert(expert_dir, level)
    t0 = time.perf_counter()
    traj = jax.device_get(make_expert_rollout(level, n_envs, steps)(params, jax.random.PRNGKey(seed)))
    obs, chunks, stats = chunks_from_trajectories(
        np.asarray(traj["obs"]), np.asarray(traj["action"]), np.asarray(traj["done"]), np.asarray(traj["goal"]), H
    )
    if stats["samples"] == 0:
        raise UserError("the expert produced no successful episode in the collection window", path=str(expert_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "data.tmp.npz"
    np.savez(tmp, obs=obs, chunks=chunks)
    os.replace(tmp, out / "data.npz")
    info = {"level": level_name, "H": H, "n_envs": n_envs, "steps": steps, "seed": seed,
            "expert": str(expert_dir), "expert_solve_rate": solve, "collect_wall_s": time.perf_counter() - t0,
            "expert_training": {"command": meta.get("command"), "config": meta["config"],
                                "train_wall_s": meta.get("train_wall_s")},
            "command": command, **stats}
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
