"""What `rtcbench run` shows on the terminal: the start line, per-cell lines, the progress bar and the
closing summary table. The runner calls it; nothing here computes or writes a result."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rtcbench.executors import Shard
    from rtcbench.plan import PreparedCell


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=200)  # logs and captured output: no wrapping at 80 columns
    return console


def fmt_ci(row) -> str:
    return f"{row['solve_rate']:.3f} [{row['solve_ci_low']:.2f}, {row['solve_ci_high']:.2f}]"


def _num(value, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


class RunUI:
    """Progress of one run on stderr (a live bar in a terminal, one line per cell otherwise)."""

    def __init__(self, rollout_shards: int = 1):
        self.console = _console(stderr=True)
        self.rollout_shards = rollout_shards
        self._progress = None
        self._task = None
        self._groups_seen: set = set()  # compile groups this process has started

    def print(self, *args) -> None:
        (self._progress.console if self._progress is not None else self.console).print(*args)

    def announce(self, shard: Shard) -> None:
        """Before a shard runs. The first shard of a compile group (level, method, policy) compiles its episode
        (or loads it from the persistent cache), which can take tens of seconds: say so, in the live bar's
        description in a terminal and as a line in logs and pipes; later shards of the group just start."""
        first_of_group = shard.group not in self._groups_seen
        self._groups_seen.add(shard.group)
        what = "{} | {} | {}".format(*shard.key) + (f" rollouts [{shard.lo}, {shard.hi})"
                                                     if self.rollout_shards > 1 else "")
        if self.console.is_terminal:
            if self._progress is not None:
                self._progress.update(self._task, description=("compiling " if first_of_group else "") + what)
        else:
            self.console.print(f"  start {what}" + (" (compiling its episode, or loading it from the compile "
                                                    "cache)" if first_of_group else ""))

    @contextmanager
    def progress(self, total: int, completed: int, first: PreparedCell | None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False) as progress:
            self._progress = progress
            self._task = progress.add_task("cells", total=total, completed=completed)
            if first is not None:
                self.next_cell(first)
            try:
                yield self
            finally:
                self._progress = None

    def next_cell(self, prep: PreparedCell) -> None:
        self._progress.update(self._task, description="{} | {} | {}".format(*prep.key))

    def cell_done(self, row: dict, compile_s: float, run_s: float, write_s: float, connect_s: float) -> None:
        jerk = row["jerk_mean_d2"] if row["jerk_mean_d2"] is not None else float("nan")
        self.print(f"  {row['level']} | {row['method']} | {row['setup']}: solve {fmt_ci(row)}, jerk "
                   f"{jerk:.3g}/step, compile {compile_s:.1f} s, run {run_s:.1f} s, write {write_s * 1000:.0f} ms"
                   + (f" (of which {connect_s:.2f} s opening the file / waiting for its lock)"
                      if connect_s > 0.1 else ""))
        self._progress.advance(self._task)


def print_summary(db_path: Path, run_id: str, lock_timeout_s: float) -> None:
    """The closing table of a run (stdout), read back from the store, and its run id."""
    from rich.table import Table
    from rich.text import Text

    from rtcbench.store.db import read_only

    with read_only(db_path, lock_timeout_s=lock_timeout_s) as conn:
        frame = conn.execute(
            "SELECT level, setup, method, n_rollouts, solve_rate, solve_ci_low, solve_ci_high, jerk_mean_d2, d_p95, "
            "d_p99, violation_rate, stall_frac, inference_ms FROM cells WHERE run_id = ? ORDER BY level, setup, method",
            [run_id]).df()
        run = conn.execute("SELECT status, wall_s, compile_s FROM runs WHERE run_id = ?", [run_id]).fetchone()
    table = Table(title=f"run {run_id}: {run[0]}, {run[1]:.0f} s wall ({run[2]:.0f} s compiling); jerk/step: mean "
                  "|second difference| of the actions per step, on the level's used action dims")
    for col in ("level", "setup", "method", "n", "solve rate [95% CI]", "jerk/step", "d p95/p99", "violation",
                "stall", "inference ms"):
        table.add_column(col, overflow="fold")  # a narrow terminal wraps names instead of cutting them
    for _, r in frame.iterrows():
        table.add_row(*(Text(x) for x in (
            r["level"], r["setup"], r["method"], str(int(r["n_rollouts"])), fmt_ci(r), _num(r["jerk_mean_d2"], ".3g"),
            f"{_num(r['d_p95'], '.3g')}/{_num(r['d_p99'], '.3g')}", _num(r["violation_rate"], ".3f"),
            _num(r["stall_frac"], ".3f"), _num(r["inference_ms"], ".3g"))))
    _console(stderr=False).print(table)
    print(f"run_id: {run_id}")
