"""Part 3 of the study page: what the runs cost (per run and method, from the cells table) and the engine
against the limit (from `rtcbench bench` JSON lines)."""

from __future__ import annotations

import pandas as pd

from rtcbench.study.runs import RunData
from rtcbench.tables import md_table

# The columns of `rtcbench bench` records shown, in this order, where present.
BENCH_COLUMNS = ("source", "level", "weights", "preset", "method", "B", "T", "engine_steps_per_s",
                 "physics_only_steps_per_s", "limit_steps_per_s", "ratio", "inference_ms", "compile_s", "device")


def _cost_rows(runs: list[RunData]) -> list[dict]:
    """One row per run and method: cells, rollouts, medians of the cells' wall, run and compile time and cost."""
    rows = []
    for data in runs:
        c = data.cells
        for m, g in c.groupby("method", sort=False):
            rows.append({"run": data.runs[0]["scenario"], "method": m, "cells": len(g),
                         "rollouts": int(g["n_rollouts"].iloc[0]),
                         "median wall s / cell": float(g["wall_s"].median()),
                         "median run s / cell": float(g["run_s"].median()),
                         "compile s": float(g["compile_s"].max()),
                         "median env-steps/s": float(g["env_steps_per_s"].median()),
                         "NFE / inference": float(g["nfe_per_inference"].median()),
                         "VJP / inference": float(g["vjp_per_inference"].median()),
                         "median ms / batched inference": float(g["inference_ms"].median()),
                         "device": ", ".join(sorted({str(r["device_kind"]) for r in data.runs}))})
    return rows


def cost_section(runs: list[RunData], bench_lines: list[dict]) -> list[str]:
    """Part 3 of the page: the cost table of the runs and the bench lines' table."""
    lines = ["## 3. Cost and scale", ""]
    rows = _cost_rows(runs)
    if rows:
        frame = pd.DataFrame(rows)
        lines += ["Per run and method (env-steps/s counts every simulated step of every rollout; a cell's wall "
                  "time is its compile plus its run, and only the first cell of a method compiles):", "",
                  md_table(frame, [(k, k) for k in frame.columns]), ""]
    if bench_lines:
        frame = pd.DataFrame(bench_lines)
        cols = [c for c in BENCH_COLUMNS if c in frame.columns]
        lines += ["Engine against the limit, from `rtcbench bench` (physics alone plus the bare batched policy calls "
                  "the engine made, timed interleaved in the same process; ratio = engine / limit):", "",
                  md_table(frame, [(c, c) for c in cols]), ""]
    return lines
