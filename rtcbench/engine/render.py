"""Drawing one rollout with Kinetix's pixel renderer: replay the env states from the executed actions and
the engine's own keys, caption each frame from the schedule, write a GIF or MP4.

No database here: `rtcbench.videos` finds a stored rollout, re-simulates it through the engine and calls
these functions. The replay uses rollout i's reset key, per-step keys and action noise
(`rtcbench.engine.rollout`), so its states are the engine's. Each frame's caption:

            step 37/111 | chunk k=9 started at 35 (d=2, s=3), lands at 37 | LANDS
            step 40/111 | chunk k=10 started at 38 (d=6, s=3), lands at 44 | STALL: fallback action
            step 111/111 | ... | SOLVED  (or: episode ends: failed)

The caption follows the timeline contract (docs/contracts.md, "Schedule"): the step, the inference
started at or before it and when it lands, the swap step and stall steps. GIF (pillow) or MP4 (imageio's
ffmpeg) by suffix.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

FORMATS = (".gif", ".mp4")


@dataclass
class Replay:
    frames: list  # [H, W, 3] uint8 per step of the first episode
    length: int
    ret: float
    solved: bool
    captions: list[str]


_REPLAYS: dict = {}  # (id(env), B, T) -> (env, jitted replay): one compile serves every rollout of a batch shape


def replay_states(level, actions: np.ndarray, env_seed: int, rollout: int, first_rollout: int | None = None):
    """The env states of rollout `rollout` under its executed commanded actions, with the engine's keys
    (rtcbench.engine.rollout). `actions` is [B, T, A], the executed actions of the whole batch the rollout
    was computed in (rollouts first_rollout .. first_rollout + B - 1), or [T, A] of the rollout alone (a
    batch of one). The replay steps that whole batch as the engine steps it: vmapped, with the level's
    parameters a traced input. XLA's CPU results depend on the batch and on constants folded into the
    program: alone, or with the parameters folded in, a long rollout drifts off the engine's (one of
    l/h17_unicycle, 256 in a batch, ran 189 steps alone instead of its 178). Returns (the rollout's states
    stacked over [T + 1]: state t is the one step t acts in, rewards [T], dones [T], goal [T])."""
    actions = np.asarray(actions, np.float32)
    if actions.ndim == 2:
        actions, first_rollout = actions[None], rollout
    first = rollout if first_rollout is None else first_rollout
    B, T, _ = actions.shape
    if not first <= rollout < first + B:
        raise ValueError(f"rollout {rollout} is not in the batch of rollouts [{first}, {first + B})")
    key = (id(level.env), B, T)
    if key not in _REPLAYS:  # the env is kept with its compiled replay, so its id is never reused
        _REPLAYS[key] = (level.env, jax.jit(functools.partial(_replay_batch, level.env)))
    states, rewards, dones, goal = _REPLAYS[key][1](
        level.env_params, jnp.asarray(env_seed, jnp.uint32), jnp.asarray(first, jnp.uint32),
        jnp.asarray(rollout - first, jnp.int32), jnp.asarray(actions))
    return states, np.asarray(rewards), np.asarray(dones), np.asarray(goal)


def _replay_batch(env, params, env_seed, first_rollout, row, actions):
    """The engine's env stepping (rtcbench.engine.rollout.episode) of a batch of B rollouts under fixed
    actions [B, T, A]; -> row `row`'s states [T + 1], rewards, dones and goal flags [T]."""
    from rtcbench.engine.rollout import action_noise, env_reset_keys, env_rollout_keys, env_step_keys

    B, T, A = actions.shape
    env_keys = env_rollout_keys(env_seed, B, first_rollout)  # [B, 2]
    _, state0 = jax.vmap(env.reset, (0, None))(env_reset_keys(env_keys), params)

    def step(state, inputs):
        j, a = inputs  # a: [B, A]
        step_keys, noise_keys = env_step_keys(env_keys, j)
        _, nxt, reward, done, info = jax.vmap(env.step, (0, 0, 0, None))(
            step_keys, state, a + action_noise(noise_keys, A), params)
        return nxt, (jax.tree_util.tree_map(lambda x: x[row], nxt), reward[row], done[row], info["GoalR"][row])

    xs = (jnp.arange(T, dtype=jnp.int32), jnp.swapaxes(actions, 0, 1))  # [T], [T, B, A]
    _, (states, rewards, dones, goal) = jax.lax.scan(step, state0, xs)
    states = jax.tree_util.tree_map(lambda first, rest: jnp.concatenate([first[row][None], rest]), state0, states)
    return states, rewards, dones, goal


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


def gif_frame_durations_ms(n_frames: int, fps: int) -> list[int]:
    """Per-frame GIF delays in ms (multiples of 10: a GIF stores hundredths of a second) whose running total
    stays within half a hundredth of frame/fps: at 15 fps 1/15 s = 6.67 cs becomes 7, 6, 7, 7, 6, 7, ... cs
    instead of 6 cs each (which played 11 % fast)."""
    ends = [round(100 * (i + 1) / fps) for i in range(n_frames)]
    return [10 * (end - start) for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def write_video(frames: list[np.ndarray], out: Path, fps: int) -> None:
    """Write frames as a GIF (delays from `gif_frame_durations_ms`: the video lasts len(frames) / fps seconds)
    or, by suffix, an MP4; under a temporary name renamed when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial" + out.suffix)
    if out.suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(tmp, save_all=True, append_images=images[1:],
                       duration=gif_frame_durations_ms(len(images), fps), loop=0)
    else:
        import imageio.v2 as imageio

        with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1) as writer:
            for f in frames:
                writer.append_data(f)
    tmp.replace(out)  # a killed render leaves no half-written video under the asked name
