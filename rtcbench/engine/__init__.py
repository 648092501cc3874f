"""The rollout engine: schedule-driven, jitted Kinetix rollouts of every chunking method (docs/DESIGN.md §1, §4)."""

from rtcbench.engine.cell import CellOutput, run_cell

__all__ = ["CellOutput", "run_cell"]
