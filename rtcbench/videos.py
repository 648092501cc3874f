"""`rtcbench render` and `rtcbench report --videos`: re-simulate a stored rollout and draw it.

The engine is a pure function of (scenario, seeds, rollout index) and of the batch it runs in: XLA may pick
other kernels for another batch size, so a rollout computed alone can differ from the stored one in the
last digits of its return, or more. A stored rollout is therefore computed again inside the very batch
the run computed it in, and no state is stored:

    run row (scenario path or --scenario, --rollouts, --set, rollout_shards, device_count) + cell row
    (level, method, setup, config hash, n_rollouts)
      -> the run's scenario rebuilt (rtcbench.plan); the cell's config hash must equal the stored one (else
         the files changed: refused)
      -> the shard [lo, hi) holding rollout i (`executors.shard_bounds(n_rollouts, rollout_shards,
         device_count)`; NULL in runs made before they were recorded: 1), run as `executors.run_shard` ran it:
         the whole schedule when the cell was one shard, else `Schedule.rollouts(lo, hi)`, with
         ``first_rollout = lo`` over the same number of devices (refused where fewer exist), the executed
         actions recorded                                                     # actions [hi - lo, T, A]
      -> row i - lo: its solved and length must equal the stored row, and its return (float32 from the
         engine, stored as float64) the stored value exactly (else refused: not the same rollout)
      -> the env replayed over that same batch (each device's rows of the shard) with those actions and the
         engine's own keys (rtcbench.engine.render.replay_states), one frame per step of the first episode
         with the timeline drawn over it. The replay's return is checked against the engine's (within 1e-4;
         on CPU it is the same float32, `replay_return_exact`), so the states drawn are the engine's.

Recording the actions compiles the episode once more (``record_actions`` is part of the compile key) and
adds an output; it changes no result: on this machine's CPU every rollout tried came back bit for bit (the
test runs, and 4 failed and 4 solved rollouts of a 256-rollout l/h17_unicycle cell, whose returns computed
alone differed from the stored ones by 3e-7 to 3e-4). Were a backend to differ there, the exact check
refuses the rollout rather than draw another one. A cell of a run resumed with another shard or device
count than the run row records was computed in other batches and is refused the same way.

This module sits above the store and the plan; the drawing itself (no database) is `rtcbench.engine.render`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rtcbench.engine.render import FORMATS, captions, render_rollout, replay_states, write_video
from rtcbench.errors import UserError

if TYPE_CHECKING:
    from rtcbench.engine.cell import CellOutput
    from rtcbench.plan import LoadedInputs
    from rtcbench.scenario import Scenario


# `rtcbench run`'s options that a re-simulation re-applies from the run row, by the column that records them
# (an error in one names the column: `render` and `report` have no such option)
RECORDED_OPTIONS = {"--set": "runs.overrides", "--rollouts": "runs.n_rollouts_override"}


class NotReproducible(UserError):
    """A stored rollout that cannot be computed again here exactly: the scenario file is missing or its
    files changed, the run used more devices than this machine has, or the re-simulation gives another
    result. `render` refuses it; `report --videos` lists it with this message and goes on."""


@dataclass
class Resimulated:
    """Rollout `rollout` of a cell, computed again in its shard and checked against its stored row."""

    level: object  # rtcbench.levels.Level
    schedule: object  # the rollout's schedule row: a Schedule of one rollout
    actions: np.ndarray  # [b, T, A] executed commanded actions of the batch one device computed it in
    first: int  # the cell-wide index of that batch's row 0
    solved: bool
    ret: float
    length: int
    shard: tuple[int, int]
    checked: bool  # False only when the store lacks the rollout row


class StoredRun:
    """One stored run, ready to re-simulate its rollouts as the run computed them. Each shard is computed
    once and kept, so `report --videos` draws every picked rollout of a shard from one engine call.

    scenario_path: the scenario file to use instead of the run's recorded path (`render --scenario`);
    scenario_option: the flag that gives it, named in the refusal when the file is not here (None: the
    command has no such flag)."""

    def __init__(self, db_path: Path, run_id: str, scenario_path: Path | None = None,
                 scenario_option: str | None = "--scenario"):
        from rtcbench.store.db import read_only
        from rtcbench.store.runs import recorded_run

        self.db_path, self.run_id = Path(db_path), run_id
        self.run = recorded_run(db_path, run_id, field="--run")
        self.given = scenario_path is not None
        self.scenario_path = Path(scenario_path) if self.given else Path(self.run["scenario_path"])
        self.scenario_option = scenario_option
        self.shards = int(self.run["rollout_shards"] or 1)
        self.devices = int(self.run["device_count"] or 1)
        with read_only(db_path) as conn:
            self.made_on = conn.execute("SELECT jax_backend, device_kind, jaxlib_version FROM runs WHERE run_id = ?",
                                        [run_id]).fetchone()
        self._loaded: tuple[Scenario, LoadedInputs] | None = None
        self._outputs: dict[tuple, CellOutput] = {}

    def cell_row(self, cell: str) -> tuple[tuple[str, str, str], str, str, int]:
        """LEVEL/METHOD/SETUP (LEVEL may contain '/') -> (key, cell_id, config hash, n_rollouts)."""
        from rtcbench.store.db import read_only

        parts = cell.rsplit("/", 2)
        if len(parts) != 3 or not all(parts):
            raise UserError(f"expected LEVEL/METHOD/SETUP, got {cell!r}", field="--cell")
        with read_only(self.db_path) as conn:
            row = conn.execute("SELECT cell_id, config_hash, n_rollouts FROM cells WHERE run_id = ? AND level = ? "
                               "AND method = ? AND setup = ?", [self.run_id, *parts]).fetchone()
            if row is None:
                have = conn.execute("SELECT level || '/' || method || '/' || setup FROM cells WHERE run_id = ? "
                                    "ORDER BY 1", [self.run_id]).fetchall()
                raise UserError(f"run {self.run_id} has no cell {cell!r}; it has: "
                                f"{', '.join(h[0] for h in have[:12])}", field="--cell")
        return (parts[0], parts[1], parts[2]), row[0], row[1], int(row[2])

    def _scenario(self) -> tuple[Scenario, LoadedInputs]:
        from rtcbench.plan import load_inputs, load_scenario

        if self._loaded is None:
            if self.given and not self.scenario_path.is_file():
                raise UserError("no such file", path=str(self.scenario_path), field="--scenario")
            if not self.scenario_path.is_file():
                hint = f", or name the file with {self.scenario_option}" if self.scenario_option else ""
                raise NotReproducible(f"the run's scenario file {self.scenario_path} is not here (run from the folder "
                                      f"the run was made in{hint})", path=str(self.db_path), field="runs.scenario_path")
            rollouts = self.run["n_rollouts_override"]
            try:
                scenario = load_scenario(self.scenario_path, sets=self.run["overrides"],  # the run's --set, --rollouts
                                         rollouts=int(rollouts) if rollouts is not None else None)
                self._loaded = scenario, load_inputs(scenario)
            except UserError as exc:  # the files no longer load as the run loaded them: named as the run's record
                field = RECORDED_OPTIONS.get(exc.field, exc.field)
                raise NotReproducible(f"the run's scenario does not load again: {exc.message}",
                                      path=exc.path or str(self.scenario_path), field=field) from None
        return self._loaded

    def resimulate(self, cell: str, rollout: int) -> Resimulated:
        """Compute rollout `rollout` of `cell` again in its shard and check it against the stored row."""
        import jax

        from rtcbench.executors import shard_bounds
        from rtcbench.store.db import read_only

        key, cell_id, cell_hash, n_rollouts = self.cell_row(cell)
        if not 0 <= rollout < n_rollouts:
            raise UserError(f"the cell has rollouts 0..{n_rollouts - 1}, got {rollout}", field="--rollout")
        with read_only(self.db_path) as conn:
            stored = conn.execute("SELECT solved, episode_return, episode_length FROM rollouts WHERE cell_id = ? AND "
                                  "rollout = ?", [cell_id, rollout]).fetchone()
        scenario, inputs = self._scenario()
        match = [c for c in scenario.cells() if c.key == key]
        if not match or scenario.cell_config_hash(match[0]) != cell_hash:
            raise NotReproducible("the scenario, its traces or its policies changed since this run: the rollout "
                                  "cannot be re-simulated exactly", path=str(self.scenario_path), field="config_hash")
        the_cell = match[0]
        schedule = scenario.build_schedule(the_cell.setup, world_pauses=the_cell.method.kind == "sync")
        try:
            bounds = shard_bounds(schedule.n_rollouts, self.shards, self.devices)
        except UserError:
            bounds = []
        if schedule.n_rollouts != n_rollouts or not bounds:
            raise NotReproducible(f"the cell holds {n_rollouts} rollouts in {self.shards} shard(s) over {self.devices} "
                                  f"device(s) but its scenario gives {schedule.n_rollouts}: the run cannot be split "
                                  "again as it was computed", path=str(self.db_path), field="runs.rollout_shards")
        lo, hi = next((lo, hi) for lo, hi in bounds if lo <= rollout < hi)
        here = jax.devices()
        if self.devices > len(here):
            hint = (f" (on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={self.devices})"
                    if here[0].platform == "cpu" else "")
            raise NotReproducible(f"the run split each shard's rollouts over {self.devices} devices and JAX sees "
                                  f"{len(here)} {here[0].platform} device(s) here; over fewer devices the batch, and so "
                                  f"the result, can differ{hint}", path=str(self.db_path), field="runs.device_count")
        out = self._shard_output(key, the_cell, scenario, inputs, schedule, lo, hi)
        per, i = out.per_rollout, rollout - lo
        again = (bool(per["solved"][i]), float(per["return"][i]), int(per["length"][i]))  # float32 -> float64: exact
        if stored is not None and again != (bool(stored[0]), float(stored[1]), int(stored[2])):
            from rtcbench.provenance import jax_device, package_version

            backend, kind, jaxlib = self.made_on
            now = "{} ({})".format(*jax_device())
            raise NotReproducible(
                f"re-simulated rollout {rollout} (in its shard [{lo}, {hi}) over {self.devices} device(s)) gives "
                f"solved/return/length {again}, the store says {tuple(stored)}: not the same rollout (the run was "
                f"computed on {backend} ({kind}) with jaxlib {jaxlib}, this is {now} with jaxlib "
                f"{package_version('jaxlib')}; or the cell was resumed with another shard or device count)",
                path=str(self.db_path), field=f"rollouts[{rollout}]")
        per_device = (hi - lo) // self.devices  # each device steps its own rows of the shard
        first = lo + (i // per_device) * per_device
        return Resimulated(inputs.levels[the_cell.level], schedule.rollouts(rollout, rollout + 1),
                           out.extra["actions"][first - lo:first - lo + per_device], first, *again, shard=(lo, hi),
                           checked=stored is not None)

    def _shard_output(self, key, the_cell, scenario, inputs, schedule, lo: int, hi: int) -> CellOutput:
        """Shard [lo, hi) of the cell through the engine as `executors.run_shard` ran it, actions recorded
        (inference timing off: it never changes a result)."""
        from rtcbench.engine import run_cell

        if (key, lo, hi) not in self._outputs:
            whole = lo == 0 and hi == schedule.n_rollouts
            self._outputs[(key, lo, hi)] = run_cell(
                inputs.levels[the_cell.level], inputs.policy_for(scenario, the_cell), the_cell.method,
                schedule if whole else schedule.rollouts(lo, hi), H=scenario.H, n=scenario.flow_steps,
                env_seed=scenario.seeds.env, policy_seed=scenario.seeds.policy, max_steps=scenario.max_steps,
                fallback=scenario.fallback, weak_policy=inputs.policy_for(scenario, the_cell, "weak_policy"),
                first_rollout=lo, devices=self.devices, time_inference=False, record_actions=True)
        return self._outputs[(key, lo, hi)]

    def render(self, cell: str, rollout: int, out: Path, fps: int = 15) -> dict:
        """Re-simulate rollout `rollout` of `cell`, replay its states and write its video to `out`."""
        if out.suffix not in FORMATS:
            raise UserError(f"must end in {' or '.join(FORMATS)}, got {out.name!r}", field="--out")
        if out.suffix == ".gif":
            check_gif_fps(fps)
        sim = self.resimulate(cell, rollout)
        scenario, _ = self._scenario()
        length = sim.length
        states, rewards, dones, _ = replay_states(sim.level, sim.actions, scenario.seeds.env, rollout, sim.first)
        replay_len = int(np.argmax(dones)) + 1 if dones.any() else len(dones)
        if replay_len != length or not np.isclose(float(rewards[:length].sum()), sim.ret, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"the state replay diverged from the engine (length {replay_len} vs {length}); the "
                               "replay no longer follows rtcbench.engine.rollout's keys")
        replay_ret = np.float32(0.0)
        for reward in rewards[:length]:  # summed step by step in float32, as the engine sums the return
            replay_ret = np.float32(replay_ret + reward)
        lines = captions(sim.schedule, length, sim.solved)
        title = f"{' | '.join(cell.rsplit('/', 2))} | rollout {rollout} | run {self.run_id}"
        frames = render_rollout(sim.level, states, length, lines, title)
        write_frames(frames, out, fps)
        return {"out": str(out), "frames": len(frames), "length": length, "solved": sim.solved, "return": sim.ret,
                "checked_against_store": sim.checked, "shard": list(sim.shard), "devices": self.devices,
                "replay_return_exact": float(replay_ret) == sim.ret}


# GIF frame delays are whole hundredths of a second, and browsers play a delay under 2 cs as 10 cs.
GIF_MAX_FPS = 50


def check_gif_fps(fps: int) -> None:
    """Refuse a frame rate a GIF cannot play (before any rollout is re-simulated)."""
    if not 1 <= fps <= GIF_MAX_FPS:
        raise UserError(f"a GIF plays at most {GIF_MAX_FPS} frames per second (its delays are whole 1/100 s, and "
                        f"players stretch delays under 2/100 s), got {fps}; write an .mp4 for more", field="--fps")


def write_frames(frames: list[np.ndarray], out: Path, fps: int) -> None:
    """Write the frames as a GIF or, by suffix, an MP4 (`rtcbench.engine.render.write_video`), refusing a GIF
    frame rate no player keeps (`check_gif_fps`)."""
    if out.suffix == ".gif":
        check_gif_fps(fps)
    write_video(frames, out, fps)


def render_stored_rollout(db_path: Path, run_id: str, cell: str, rollout: int, out: Path, fps: int = 15,
                          scenario_path: Path | None = None) -> dict:
    """Re-simulate rollout `rollout` of `cell` (LEVEL/METHOD/SETUP, LEVEL may contain '/') of a stored run
    and write it to `out`; see the module docstring. `scenario_path` replaces the run's recorded scenario
    path (its config hash is still checked). Returns what was checked and written."""
    return StoredRun(db_path, run_id, scenario_path).render(cell, rollout, out, fps)


def cell_slug(cell: str) -> str:
    """LEVEL/METHOD/SETUP -> a file-name part (``l/h4_cartpole:packed/naive/d4`` -> ``l_h4_cartpole_packed_naive_d4``)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in cell.replace(":", "_")).strip("_")


def pick_report_rollouts(db_path: Path, run_id: str, k: int, patterns: list[str] | None) -> list[dict]:
    """The rollouts `rtcbench report --videos K` shows: for every cell of the run whose LEVEL/METHOD/SETUP
    matches one of `patterns` (shell patterns; None: every cell), its first K failed and first K solved
    rollouts by rollout index (a fixed rule: nothing is chosen after looking at the videos).
    -> [{cell, rollout, solved, length}] in cell order, failed first."""
    from rtcbench.store.db import read_only

    with read_only(db_path) as conn:
        rows = conn.execute(
            "SELECT c.level || '/' || c.method || '/' || c.setup AS cell, r.rollout, r.solved, r.episode_length "
            "FROM rollouts r JOIN cells c USING (cell_id) WHERE c.run_id = ? ORDER BY c.level, c.method, c.setup, "
            "r.rollout", [run_id]).fetchall()
    cells = list(dict.fromkeys(cell for cell, _, _, _ in rows))
    chosen = [c for c in cells if patterns is None or any(fnmatch.fnmatchcase(c, p) for p in patterns)]
    if patterns is not None and not chosen:
        raise UserError(f"no cell of run {run_id} matches {', '.join(patterns)}; it has: {', '.join(cells[:12])}",
                        field="--video-cells")
    picked = []
    for cell in chosen:
        for want in (False, True):
            hits = [(r, n) for c, r, solved, n in rows if c == cell and bool(solved) == want][:k]
            picked += [{"cell": cell, "rollout": int(r), "solved": want, "length": int(n)} for r, n in hits]
    return picked


def report_videos(db_path: Path, run_id: str, out_dir: Path, picked: list[dict], k: int,
                  patterns: list[str] | None = None, fps: int = 15, log=print) -> list[str]:
    """Render `picked` (from `pick_report_rollouts` with the same k and patterns) into ``out_dir/videos/``
    (GIF, each re-simulated in its shard and checked against its stored row, as `render_stored_rollout`)
    -> the Markdown lines of the report's "Rollout videos" section. A rollout that cannot be re-simulated
    here (`NotReproducible`) gets a row with the reason instead of a video; the others are still drawn."""
    folder = out_dir / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["## Rollout videos", "",
             f"The first {k} failed and the first {k} solved rollouts (by rollout index) of "
             + ("every cell" if patterns is None else "the cells matching " + ", ".join(f"`{p}`" for p in patterns))
             + ", re-simulated from the seeds in the batch each was computed in (`rtcbench render`; each one's "
             "solve, length and return equal its stored row exactly). Each frame's caption gives the step, the "
             "chunk in flight and when it lands, and stalls.",
             "", "| cell | rollout | outcome | steps | video |", "|---|---|---|---|---|"]
    source = StoredRun(db_path, run_id, scenario_option=None)  # `report` takes the run's own scenario path
    by_cell: dict[str, list[dict]] = {}
    for item in picked:
        by_cell.setdefault(item["cell"], []).append(item)
    refused = 0
    for n, item in enumerate(picked, 1):
        outcome = "solved" if item["solved"] else "failed"
        name = f"{cell_slug(item['cell'])}_{outcome}_r{item['rollout']}.gif"
        log(f"video {n}/{len(picked)}: {item['cell']} rollout {item['rollout']} ({outcome})")
        try:
            info = source.render(item["cell"], item["rollout"], folder / name, fps=fps)
        except NotReproducible as exc:
            refused += 1
            log(f"  not rendered: {exc.message}")
            reason = " ".join(exc.message.split()).replace("|", "\\|")
            lines.append(f"| {item['cell']} | {item['rollout']} | {outcome} | {item.get('length', '')} | "
                         f"not rendered: {reason} |")
            continue
        lines.append(f"| {item['cell']} | {item['rollout']} | {outcome} | {info['length']} | "
                     f"[{name}](videos/{name}) |")
    for cell, items in by_cell.items():
        missing = [o for o, want in (("failed", False), ("solved", True))
                   if sum(i["solved"] == want for i in items) < k]
        if missing:
            lines.append(f"| {cell} | | fewer than {k} {' or '.join(missing)} rollouts in this cell | | |")
    if refused:
        lines += ["", f"{refused} of {len(picked)} rollouts could not be re-simulated here exactly and have no video "
                  "(the reason is in their row)."]
    return lines + [""]
