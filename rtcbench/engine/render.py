"""`rtcbench render`: watch one rollout of a stored cell, re-simulated exactly, with Kinetix's pixel renderer.

The engine is a pure function of (scenario, seeds, rollout index), so a rollout can be computed again
anywhere without storing states:

    run row (scenario path, --rollouts) + cell row (level, method, setup, config hash)
      -> scenario rebuilt; the cell's config hash must equal the stored one (else the files changed: refused)
      -> the setup's schedule, row i only (`Schedule.rollouts(i, i + 1)`), through `run_cell` with
         ``first_rollout = i`` and the executed actions recorded       # actions [1, T, A]
      -> its solved / return / length must equal the stored rollout row (else refused: not the same rollout)
      -> the env replayed with those actions and the engine's own keys (reset key, per-step key and action
         noise of rollout i), states kept; the replay's return and first-episode length are checked again
      -> one frame per step of the first episode, with the timeline drawn over it:

            step 37/111 | chunk k=9 started at 35 (d=2, s=3), lands at 37 | LANDS
            step 40/111 | chunk k=10 started at 38 (d=6, s=3), lands at 44 | STALL: fallback action
            step 111/111 | ... | SOLVED  (or: episode ends: failed)

The frame's caption comes from the schedule (DESIGN.md §1): the step, the inference started at or before
it and when it lands, the swap step and stall steps. GIF (pillow) or MP4 (imageio's ffmpeg) by suffix.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.errors import UserError

FORMATS = (".gif", ".mp4")


@dataclass
class Replay:
    frames: list  # [H, W, 3] uint8 per step of the first episode
    length: int
    ret: float
    solved: bool
    captions: list[str]


def replay_states(level, actions: np.ndarray, env_seed: int, rollout: int):
    """The env states of rollout `rollout` under its executed commanded actions [T, A], with the engine's
    keys (rtcbench.engine.rollout). Returns (states stacked over [T + 1]: state t is the one step t acts in,
    rewards [T], dones [T], goal [T])."""
    from rtcbench.engine.rollout import action_noise, env_reset_keys, env_rollout_keys, env_step_keys

    env, params = level.env, level.env_params
    env_key = env_rollout_keys(env_seed, 1, rollout)  # [1, 2]
    _, state0 = env.reset(env_reset_keys(env_key)[0], params)

    def step(state, inputs):
        j, a = inputs
        step_keys, noise_keys = env_step_keys(env_key, j)
        _, nxt, reward, done, info = env.step(step_keys[0], state, a + action_noise(noise_keys, a.shape[-1])[0], params)
        return nxt, (nxt, reward, done, info["GoalR"])

    T = actions.shape[0]
    _, (states, rewards, dones, goal) = jax.jit(lambda s, a: jax.lax.scan(step, s, (jnp.arange(T), a)))(
        state0, jnp.asarray(actions, jnp.float32))
    states = jax.tree_util.tree_map(lambda first, rest: jnp.concatenate([first[None], rest]), state0, states)
    return states, np.asarray(rewards), np.asarray(dones), np.asarray(goal)


def captions(schedule, length: int, solved: bool) -> list[str]:
    """One caption per frame: frame j shows the state in which step j's action is executed (frame 0 is the
    reset state), captioned from the schedule's row 0 with the latest inference started at or before j, when
    it lands, and whether a chunk lands or a stall happens at j."""
    start, arrive, stall = (np.asarray(getattr(schedule, k))[0] for k in ("start", "arrive", "stall"))
    start_d, start_s = np.asarray(schedule.start_d)[0], np.asarray(schedule.start_s)[0]
    out = []
    k, started, lands, d_now, s_now = 0, 0, 0, 0, 0
    for j in range(length):
        if start[j]:
            k, started, d_now, s_now = k + (j > 0 or bool(schedule.reference_start)), j, int(start_d[j]), int(start_s[j])
            lands = j + d_now
        flight = (f"chunk k={k} started at {started} (d={d_now}, s={s_now}), lands at {lands}" if k > 0
                  else "first chunk")
        marks = [m for m, on in (("LANDS", bool(arrive[j])), ("STALL: fallback action", bool(stall[j]))) if on]
        line = f"step {j}/{length - 1} | {flight}" + (" | " + ", ".join(marks) if marks else "")
        if j == length - 1:
            line += " | " + ("SOLVED" if solved else "episode ends: failed")
        out.append(line)
    return out


MIN_WIDTH = 512  # small levels render at 125 px: frames are enlarged (nearest neighbour) to at least this


def _draw_caption(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Enlarge the frame to >= MIN_WIDTH px and put the caption lines, wrapped, in a band above it."""
    import textwrap

    from PIL import Image, ImageDraw

    img = Image.fromarray(frame)
    scale = max(1, -(-MIN_WIDTH // img.width))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    wrapped = [part for line in lines for part in textwrap.wrap(line, width=max(20, img.width // 6 - 2))]
    band = 12 * len(wrapped) + 8
    canvas = Image.new("RGB", (img.width, img.height + band), (255, 255, 255))
    canvas.paste(img, (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(wrapped):
        draw.text((4, 4 + 12 * i), line, fill=(0, 0, 0))
    return np.asarray(canvas)


def render_rollout(level, states, length: int, caption_lines: list[str], title: str) -> list[np.ndarray]:
    """Frames 0..length-1: the state before each step of the first episode, as uint8 [H, W, 3]. (The state
    after the last step is not drawn: the env has auto-reset by then.)"""
    from kinetix.render.renderer_pixels import make_render_pixels

    render = jax.jit(make_render_pixels(level.env_params, level.static_params))
    frames = []
    for t in range(length):
        state_t = jax.tree_util.tree_map(lambda x, t=t: x[t], states)
        pixels = np.asarray(render(state_t))  # [W, H, 3], y up
        image = np.clip(pixels.transpose(1, 0, 2)[::-1], 0, 255).astype(np.uint8)
        frames.append(_draw_caption(image, [title, caption_lines[t]]))
    height = max(f.shape[0] for f in frames)  # captions wrap to different heights: pad to one frame size
    return [np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0)), constant_values=255) for f in frames]


def write_video(frames: list[np.ndarray], out: Path, fps: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial" + out.suffix)
    if out.suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    else:
        import imageio.v2 as imageio

        with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1) as writer:
            for f in frames:
                writer.append_data(f)
    tmp.replace(out)  # a killed render leaves no half-written video under the asked name


def render_stored_rollout(db_path: Path, run_id: str, cell: str, rollout: int, out: Path, fps: int = 15) -> dict:
    """Re-simulate rollout `rollout` of `cell` (LEVEL/METHOD/SETUP, LEVEL may contain '/') of a stored run
    and write it to `out`; see the module docstring. Returns what was checked and written."""
    from rtcbench.engine import run_cell
    from rtcbench.runner import load_inputs, recorded_run
    from rtcbench.scenario import Scenario
    from rtcbench.store.db import read_only

    if out.suffix not in FORMATS:
        raise UserError(f"must end in {' or '.join(FORMATS)}, got {out.name!r}", field="--out")
    parts = cell.rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        raise UserError(f"expected LEVEL/METHOD/SETUP, got {cell!r}", field="--cell")
    level_name, method_label, setup_name = parts
    run = recorded_run(db_path, run_id, field="--run")
    with read_only(db_path) as conn:
        row = conn.execute("SELECT cell_id, config_hash, n_rollouts FROM cells WHERE run_id = ? AND level = ? AND "
                           "method = ? AND setup = ?", [run_id, level_name, method_label, setup_name]).fetchone()
        if row is None:
            have = conn.execute("SELECT level || '/' || method || '/' || setup FROM cells WHERE run_id = ? ORDER BY 1",
                                [run_id]).fetchall()
            raise UserError(f"run {run_id} has no cell {cell!r}; it has: {', '.join(h[0] for h in have[:12])}",
                            field="--cell")
        cell_id, cell_hash, n_rollouts = row
        if not 0 <= rollout < n_rollouts:
            raise UserError(f"the cell has rollouts 0..{n_rollouts - 1}, got {rollout}", field="--rollout")
        stored = conn.execute("SELECT solved, episode_return, episode_length FROM rollouts WHERE cell_id = ? AND "
                              "rollout = ?", [cell_id, rollout]).fetchone()
    scenario_path = Path(run["scenario_path"])
    if not scenario_path.exists():
        raise UserError(f"the run's scenario file {scenario_path} is not here (run from the folder the run was "
                        "made in)", path=str(db_path), field="runs.scenario_path")
    scenario = Scenario.from_yaml(scenario_path, sets=run["overrides"])  # the run's --set
    if run["n_rollouts_override"] is not None:
        scenario = scenario.with_overrides(rollouts=int(run["n_rollouts_override"]))
    match = [c for c in scenario.cells() if c.key == (level_name, method_label, setup_name)]
    if not match or scenario.cell_config_hash(match[0]) != cell_hash:
        raise UserError("the scenario, its traces or its policies changed since this run: the rollout cannot be "
                        "re-simulated exactly", path=str(scenario_path), field="config_hash")
    the_cell = match[0]
    inputs = load_inputs(scenario)
    level = inputs.levels[the_cell.level]
    schedule = scenario.build_schedule(the_cell.setup, world_pauses=the_cell.method.kind == "sync")
    one = schedule.rollouts(rollout, rollout + 1)
    out_cell = run_cell(level, inputs.policy_for(scenario, the_cell), the_cell.method, one, H=scenario.H,
                        n=scenario.flow_steps, env_seed=scenario.seeds.env, policy_seed=scenario.seeds.policy,
                        max_steps=scenario.max_steps, fallback=scenario.fallback,
                        weak_policy=inputs.policy_for(scenario, the_cell, "weak_policy"), time_inference=False,
                        record_actions=True, first_rollout=rollout)
    per = out_cell.per_rollout
    again = (bool(per["solved"][0]), float(per["return"][0]), int(per["length"][0]))
    if stored is not None and (again[0] != bool(stored[0]) or again[2] != int(stored[2])
                               or not np.isclose(again[1], float(stored[1]), rtol=1e-5, atol=1e-6)):
        raise UserError(f"re-simulated rollout {rollout} gives solved/return/length {again}, the store says "
                        f"{tuple(stored)}: not the same rollout (another machine or package version?)",
                        field="--rollout")
    length = again[2]
    states, rewards, dones, _ = replay_states(level, out_cell.extra["actions"][0], scenario.seeds.env, rollout)
    replay_len = int(np.argmax(dones)) + 1 if dones.any() else len(dones)
    if replay_len != length or not np.isclose(float(rewards[:length].sum()), again[1], rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"the state replay diverged from the engine (length {replay_len} vs {length}); the "
                           "replay no longer follows rtcbench.engine.rollout's keys")
    lines = captions(one, length, again[0])
    title = f"{level_name} | {method_label} | {setup_name} | rollout {rollout} | run {run_id}"
    frames = render_rollout(level, states, length, lines, title)
    write_video(frames, out, fps)
    return {"out": str(out), "frames": len(frames), "length": length, "solved": again[0], "return": again[1],
            "checked_against_store": stored is not None}


def cell_slug(cell: str) -> str:
    """LEVEL/METHOD/SETUP -> a file-name part (``l/h4_cartpole:packed/naive/d4`` -> ``l_h4_cartpole_packed_naive_d4``)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in cell.replace(":", "_")).strip("_")


def pick_report_rollouts(db_path: Path, run_id: str, k: int, patterns: list[str] | None) -> list[dict]:
    """The rollouts `rtcbench report --videos K` shows: for every cell of the run whose LEVEL/METHOD/SETUP
    matches one of `patterns` (shell patterns; None: every cell), its first K failed and first K solved
    rollouts by rollout index (a fixed rule: nothing is chosen after looking at the videos).
    -> [{cell, rollout, solved}] in cell order, failed first."""
    from rtcbench.store.db import read_only

    with read_only(db_path) as conn:
        rows = conn.execute(
            "SELECT c.level || '/' || c.method || '/' || c.setup AS cell, r.rollout, r.solved FROM rollouts r "
            "JOIN cells c USING (cell_id) WHERE c.run_id = ? ORDER BY c.level, c.method, c.setup, r.rollout",
            [run_id]).fetchall()
    cells = list(dict.fromkeys(cell for cell, _, _ in rows))
    chosen = [c for c in cells if patterns is None or any(fnmatch.fnmatchcase(c, p) for p in patterns)]
    if patterns is not None and not chosen:
        raise UserError(f"no cell of run {run_id} matches {', '.join(patterns)}; it has: {', '.join(cells[:12])}",
                        field="--video-cells")
    picked = []
    for cell in chosen:
        for want in (False, True):
            hits = [r for c, r, solved in rows if c == cell and bool(solved) == want][:k]
            picked += [{"cell": cell, "rollout": int(r), "solved": want} for r in hits]
    return picked


def report_videos(db_path: Path, run_id: str, out_dir: Path, picked: list[dict], k: int,
                  patterns: list[str] | None = None, fps: int = 15, log=print) -> list[str]:
    """Render `picked` (from `pick_report_rollouts` with the same k and patterns) into ``out_dir/videos/``
    (GIF, each re-simulated and checked against its stored row by `render_stored_rollout`) -> the Markdown
    lines of the report's "Rollout videos" section."""
    folder = out_dir / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["## Rollout videos", "",
             f"The first {k} failed and the first {k} solved rollouts (by rollout index) of "
             + ("every cell" if patterns is None else "the cells matching " + ", ".join(f"`{p}`" for p in patterns))
             + ", re-simulated from the seeds (`rtcbench render`; each one's solve, return and length equal its "
             "stored row). Each frame's caption gives the step, the chunk in flight and when it lands, and stalls.",
             "", "| cell | rollout | outcome | steps | video |", "|---|---|---|---|---|"]
    by_cell: dict[str, list[dict]] = {}
    for item in picked:
        by_cell.setdefault(item["cell"], []).append(item)
    for n, item in enumerate(picked, 1):
        outcome = "solved" if item["solved"] else "failed"
        name = f"{cell_slug(item['cell'])}_{outcome}_r{item['rollout']}.gif"
        log(f"video {n}/{len(picked)}: {item['cell']} rollout {item['rollout']} ({outcome})")
        info = render_stored_rollout(db_path, run_id, item["cell"], item["rollout"], folder / name, fps=fps)
        lines.append(f"| {item['cell']} | {item['rollout']} | {outcome} | {info['length']} | "
                     f"[{name}](videos/{name}) |")
    for cell, items in by_cell.items():
        missing = [o for o, want in (("failed", False), ("solved", True))
                   if sum(i["solved"] == want for i in items) < k]
        if missing:
            lines.append(f"| {cell} | | fewer than {k} {' or '.join(missing)} rollouts in this cell | | |")
    return lines + [""]
