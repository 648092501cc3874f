"""Engine output -> store rows: one cell row, its per-rollout columns and its per-inference delays.

    PreparedCell (plan) + CellOutput (engine) -> (cells row, rollouts columns, inferences columns)

The store (`rtcbench.store.db.Store.write_cell`) writes the three in one transaction. Nothing here
reads the scenario: every fact comes from the plan.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from rtcbench.stats import wilson_interval

if TYPE_CHECKING:
    from rtcbench.engine.cell import CellOutput
    from rtcbench.plan import EngineParams, PreparedCell
    from rtcbench.policy.checkpoint import LoadedPolicy

# Per-rollout smoothness columns (rtcbench.engine.rollout): `jerk_*` on the level's used action dimensions,
# `jerk_all_*` on every action dimension (the reference's definition).
JERK_COLUMNS = ("jerk_max_d1", "jerk_mean_d1", "jerk_max_d2", "jerk_mean_d2",
                "jerk_all_max_d1", "jerk_all_mean_d1", "jerk_all_max_d2", "jerk_all_mean_d2")


def _nanmean(values) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return float(finite.mean()) if finite.size else None


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def policy_summary(policy: LoadedPolicy) -> dict:
    """What a cell records of its checkpoint's sidecar: path, kind, its data (experts, label) and its
    measured modality (`rtcbench policy modality`), so a study can relate results to policy properties."""
    meta = getattr(policy, "meta", {}) or {}
    modality = meta.get("modality")
    if isinstance(modality, dict):
        modality = {k: v for k, v in modality.items() if isinstance(v, dict) and "value" in v} | {
            k: modality[k] for k in ("n_obs", "m", "boundary_s") if k in modality}
    return {"path": str(getattr(policy, "path", "")), "kind": meta.get("kind"), "data": meta.get("data"),
            "modality": modality, "solve_rate_d0": (meta.get("solve_rate") or {}).get("rate")}


def _schedule_columns(prep: PreparedCell) -> dict:
    stats = prep.schedule.stats
    return {
        "d_p50": stats.d_p50, "d_p95": stats.d_p95, "d_p99": stats.d_p99, "d_max": stats.d_max,
        "dhat_p50": stats.dhat_p50, "dhat_p95": stats.dhat_p95, "dhat_p99": stats.dhat_p99,
        "violation_rate": stats.violation_rate, "stall_frac": stats.stall_fraction,
        "forecast_miss_rate": stats.forecast_miss_rate, "over_forecast_rate": stats.over_forecast_rate,
        "mean_exec_horizon": stats.mean_execution_horizon,
    }


def _cost_columns(out: CellOutput) -> dict:
    return {
        "nfe_per_inference": float(out.nfe_per_inference),
        "vjp_per_inference": float(out.vjp_per_inference),
        "nfe_per_env_step": float(out.nfe_per_env_step),
        "inference_ms": _finite_or_none(out.inference_ms),
        "inference_ms_p10": _finite_or_none(out.inference_ms_p10),
        "inference_ms_p90": _finite_or_none(out.inference_ms_p90),
        "env_steps_per_s": float(out.env_steps_per_s),
        "compile_s": float(out.compile_s),
        "run_s": float(out.run_s),
        "wasted_policy_evals": float(out.wasted_policy_evals),
        "engine_stall_steps": (int(np.asarray(out.extra["stall_steps_all"]).sum())
                               if "stall_steps_all" in out.extra else None),
    }


def head_cost(out: CellOutput) -> dict | None:
    """a2c2's per-control-step cost beside the NFE columns (which count its base method's flow-policy passes):
    correction-head evaluations per first-episode env step, FLOPs of one evaluation and of one policy forward
    pass (XLA's count, one rollout), and the head's cost in policy-forward-pass equivalents per env step.
    None for methods without a head. The cells table has no column for it; it is stored in cell_config."""
    if "head_evals" not in out.extra:
        return None
    steps = max(float(np.asarray(out.per_rollout["length"]).sum()), 1.0)
    per_step = float(np.asarray(out.extra["head_evals"]).sum()) / steps
    head_f, pol_f = out.head_flops_per_eval, out.policy_flops_per_nfe
    return {"head_evals_per_env_step": per_step, "head_flops_per_eval": head_f, "policy_flops_per_nfe": pol_f,
            "head_nfe_equivalent_per_env_step": per_step * head_f / pol_f if head_f and pol_f else None}


def cell_config(engine: EngineParams, prep: PreparedCell) -> dict:
    """The cell's resolved configuration, stored as JSON beside its row."""
    cell = prep.cell
    return {
        "level": cell.level, "method": cell.method.model_dump(mode="json"), "setup": cell.setup.model_dump(mode="json"),
        "H": engine.H, "flow_steps": engine.flow_steps, "dt_ms": engine.dt_ms, "max_steps": engine.max_steps,
        "fallback": engine.fallback, "seeds": engine.seeds, "rollouts": engine.rollouts,
        "policy_sha256": prep.policy.sha256,
        "policy": policy_summary(prep.policy),
    }


def cell_row(scenario_name: str, engine: EngineParams, prep: PreparedCell, out: CellOutput, run_id: str) -> dict:
    """The cells-table row of one finished cell."""
    per = out.per_rollout
    solved = np.asarray(per["solved"], dtype=bool)
    n = int(solved.size)
    low, high = wilson_interval(int(solved.sum()), n)
    wall_steps = float(np.asarray(per["wall_steps"]).sum())
    cell = prep.cell
    return {
        "run_id": run_id, "config_hash": prep.config_hash, "comparability_key": prep.comparability_key,
        "scenario": scenario_name, "level": cell.level, "method": cell.method.label, "setup": cell.setup.name,
        "n_rollouts": n, "chunk_size": engine.H, "flow_steps": engine.flow_steps, "dt_ms": engine.dt_ms,
        "max_steps": engine.max_steps,
        "solve_rate": float(solved.mean()), "solve_ci_low": low, "solve_ci_high": high,
        "return_mean": float(np.mean(per["return"])),
        "length_mean": float(np.mean(per["length"])),
        "solves_per_1000_wall_steps": 1000.0 * float(solved.sum()) / wall_steps if wall_steps > 0 else None,
        **{k: _finite_or_none(v) for k, v in _schedule_columns(prep).items()},
        **{k: _nanmean(per[k]) for k in JERK_COLUMNS},
        **_cost_columns(out),
        "cell_config": cell_config(engine, prep) | ({"head_cost": hc} if (hc := head_cost(out)) else {}),
    }


def rollout_columns(out: CellOutput) -> dict[str, np.ndarray]:
    """The rollouts-table columns of one cell, [B] each."""
    per = out.per_rollout
    return {
        "solved": np.asarray(per["solved"], dtype=bool),
        "episode_return": np.asarray(per["return"], np.float64),
        "episode_length": np.asarray(per["length"], np.int32),
        **{k: np.asarray(per[k], np.float64) for k in JERK_COLUMNS},
        "stall_steps": np.asarray(per["stall_steps"], np.int32),
        "wall_steps": np.asarray(per["wall_steps"], np.int32),
        "n_inferences": np.asarray(per["n_inferences"], np.int32),
        "nfe": np.asarray(per["nfe"], np.int64),
        "vjp": np.asarray(per["vjp"], np.int64),
    }


def inference_columns(prep: PreparedCell) -> dict[str, np.ndarray]:
    """The per-inference delays of the cell's schedule, one row per real (not padded) inference."""
    sched = prep.schedule
    valid = sched.valid  # [B, K]
    b_idx, k_idx = np.nonzero(valid)
    return {"rollout": b_idx, "k": k_idx, "tau": sched.tau[valid], "d": sched.d_true[valid],
            "d_control": sched.d[valid], "dhat": sched.dhat[valid], "s": sched.s[valid]}


def cell_rows(scenario_name: str, engine: EngineParams, prep: PreparedCell, out: CellOutput,
              run_id: str) -> tuple[dict, dict, dict]:
    """CellOutput + plan -> (cells row, rollouts columns, inferences columns)."""
    return cell_row(scenario_name, engine, prep, out, run_id), rollout_columns(out), inference_columns(prep)
