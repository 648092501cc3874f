"""The results schema, defined once with SQLAlchemy Core (duckdb-engine).

Tables (schema version 5, `SCHEMA_VERSION`):

- ``schema_version``: one row per applied migration step (version, applied_at, rtcbench_version).
- ``runs``: one row per ``rtcbench run``: scenario identity, provenance, status and timing.
- ``cells``: one row per finished cell (level x method x delay setup) of a run. The identity, outcome,
  delay, smoothness and cost column names are fixed (docs/contracts.md, "Store"); reports and CI use them.
  (run_id, level, method, setup) is unique, so a resumed run never duplicates a cell.
- ``rollouts``: one row per rollout of a cell (paired by ``rollout`` index across cells that share
  env seeds, which is what `rtcbench compare` tests on).
- ``runs`` gained (v3) how it was executed: ``device_count`` (local devices the rollouts were sharded
  over, ``--devices``), ``executor`` (local | ray), ``rollout_shards`` and ``cell_filter`` (``--only``,
  as given; NULL for the whole scenario).
- ``cells.inference_ms_p10`` / ``inference_ms_p90`` (v4): the spread of the timed inference calls whose
  median is ``inference_ms`` (NULL in cells written before, and where inference was not timed).
- ``runs.overrides`` (v4): the ``rtcbench run --set PATH=VALUE`` overrides as a JSON list of the strings
  given, in order (NULL: the file as it is). They are part of the run's config hash through the scenario
  they produce, and ``--resume`` re-applies them.
- smoothness (v5, issue #23): ``jerk_max_d1``, ``jerk_max_d2``, ``jerk_mean_d1``, ``jerk_mean_d2`` are
  measured on the level's **used** action dimensions (`rtcbench.engine.smoothness`); the all-dimension
  values, which is what these names meant up to v4, are ``jerk_all_*``. Migrating a v4 file renames its
  old columns to ``jerk_all_*`` and adds the used-dimension ones as NULL: an old run's used-dimension
  smoothness was never measured, and no number changes meaning under an old name.
- ``inferences`` (since v2): one row per inference of a rollout: start step, true delay, forecast and
  actions consumed, from the cell's schedule. The delay CDF in reports is built from it.

Views (since v2; created by the migrations, used by the report SQL in ``reports/``):
``v_cells`` (cells with their run's status and provenance), ``v_rollouts`` (rollouts with cell
identity) and ``v_delays`` (asynchronous inferences, k >= 1, with cell identity and violation and
forecast-miss flags computed on the control timeline, as in the schedule's stats).

The tables here are the *current* shape. Migration steps (`rtcbench.store.migrations`) create and alter
them; a column added later must come with an `update_to_N` step, and the v1 fixture test checks that an
old file ends up with exactly these columns.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 5

RUN_STATUSES = ("running", "complete", "failed")

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
    sa.Column("rtcbench_version", sa.String),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    # scenario identity
    sa.Column("scenario", sa.String, nullable=False),
    sa.Column("scenario_version", sa.String),
    sa.Column("scenario_path", sa.String),
    sa.Column("config_hash", sa.String, nullable=False),
    sa.Column("comparability_key", sa.String),
    sa.Column("n_rollouts_override", sa.Integer),  # --rollouts N, else NULL (the scenario's value)
    sa.Column("n_cells_planned", sa.Integer, nullable=False),
    sa.Column("device_request", sa.String),  # auto | cpu | gpu
    # provenance
    sa.Column("rtcbench_version", sa.String),
    sa.Column("git_commit", sa.String),
    sa.Column("git_dirty", sa.Boolean),
    sa.Column("jax_version", sa.String),
    sa.Column("jaxlib_version", sa.String),
    sa.Column("flax_version", sa.String),
    sa.Column("kinetix_version", sa.String),
    sa.Column("duckdb_version", sa.String),
    sa.Column("python_version", sa.String),
    sa.Column("jax_backend", sa.String),
    sa.Column("device_kind", sa.String),
    sa.Column("host", sa.String),
    # lifecycle (UTC)
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("error", sa.String),
    sa.Column("wall_s", sa.Double),
    sa.Column("compile_s", sa.Double),
    # execution (v3; added by a migration step, so after the others)
    sa.Column("device_count", sa.Integer),  # devices each cell's rollouts were sharded over (--devices)
    sa.Column("executor", sa.String),  # local | ray
    sa.Column("rollout_shards", sa.Integer),  # pieces each cell's rollouts were split into (--rollout-shards)
    sa.Column("cell_filter", sa.String),  # --only as given, NULL for every cell of the scenario
    sa.Column("overrides", sa.String),  # v4: --set PATH=VALUE overrides, a JSON list as given; NULL for none
    sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name="ck_runs_status"),
)

cells = sa.Table(
    "cells",
    metadata,
    sa.Column("cell_id", sa.String, primary_key=True),
    # identity (fixed names)
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("config_hash", sa.String, nullable=False),
    sa.Column("comparability_key", sa.String, nullable=False),
    sa.Column("scenario", sa.String, nullable=False),
    sa.Column("level", sa.String, nullable=False),
    sa.Column("method", sa.String, nullable=False),
    sa.Column("setup", sa.String, nullable=False),
    sa.Column("n_rollouts", sa.Integer, nullable=False),
    # timeline parameters of the cell
    sa.Column("chunk_size", sa.Integer),  # H
    sa.Column("flow_steps", sa.Integer),  # n
    sa.Column("dt_ms", sa.Double),
    sa.Column("max_steps", sa.Integer),
    # outcomes (fixed names); first episode of each rollout only
    sa.Column("solve_rate", sa.Double),
    sa.Column("solve_ci_low", sa.Double),  # Wilson 95%
    sa.Column("solve_ci_high", sa.Double),
    sa.Column("return_mean", sa.Double),
    sa.Column("length_mean", sa.Double),
    sa.Column("solves_per_1000_wall_steps", sa.Double),  # throughput; counts sync pauses
    # delays (fixed names), over the asynchronous inferences of the cell's schedule
    sa.Column("d_p50", sa.Double),
    sa.Column("d_p95", sa.Double),
    sa.Column("d_p99", sa.Double),
    sa.Column("d_max", sa.Double),
    sa.Column("dhat_p50", sa.Double),
    sa.Column("dhat_p95", sa.Double),
    sa.Column("dhat_p99", sa.Double),
    sa.Column("violation_rate", sa.Double),
    sa.Column("stall_frac", sa.Double),
    sa.Column("forecast_miss_rate", sa.Double),
    sa.Column("over_forecast_rate", sa.Double),
    sa.Column("mean_exec_horizon", sa.Double),
    # smoothness over ALL action dimensions (named jerk_* up to v4): mean over rollouts of the per-rollout
    # max (and mean per step) norm of the first and second differences of the commanded actions
    sa.Column("jerk_all_max_d1", sa.Double),
    sa.Column("jerk_all_max_d2", sa.Double),
    sa.Column("jerk_all_mean_d1", sa.Double),
    sa.Column("jerk_all_mean_d2", sa.Double),
    # cost (fixed names)
    sa.Column("nfe_per_inference", sa.Double),
    sa.Column("vjp_per_inference", sa.Double),
    sa.Column("nfe_per_env_step", sa.Double),
    sa.Column("inference_ms", sa.Double),
    sa.Column("env_steps_per_s", sa.Double),
    sa.Column("compile_s", sa.Double),
    sa.Column("run_s", sa.Double),
    sa.Column("wasted_policy_evals", sa.Double),
    sa.Column("engine_stall_steps", sa.BigInteger),  # stall steps counted by the engine (all rollouts)
    sa.Column("cell_config", sa.String),  # canonical JSON of the cell's configuration
    sa.Column("written_at", sa.DateTime, nullable=False),
    # v4: spread of the timed batched inference calls behind inference_ms (their 10th and 90th percentiles)
    sa.Column("inference_ms_p10", sa.Double),
    sa.Column("inference_ms_p90", sa.Double),
    # v5: smoothness over the level's USED action dimensions (the fixed names reports and gates use)
    sa.Column("jerk_max_d1", sa.Double),
    sa.Column("jerk_max_d2", sa.Double),
    sa.Column("jerk_mean_d1", sa.Double),
    sa.Column("jerk_mean_d2", sa.Double),
    sa.UniqueConstraint("run_id", "level", "method", "setup", name="uq_cells_run_level_method_setup"),
)

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("cell_id", sa.String, primary_key=True),
    sa.Column("rollout", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("solved", sa.Boolean, nullable=False),
    sa.Column("episode_return", sa.Double),
    sa.Column("episode_length", sa.Integer),
    sa.Column("jerk_all_max_d1", sa.Double),  # all action dimensions (jerk_* up to v4)
    sa.Column("jerk_all_mean_d1", sa.Double),
    sa.Column("jerk_all_max_d2", sa.Double),
    sa.Column("jerk_all_mean_d2", sa.Double),
    sa.Column("stall_steps", sa.Integer),
    sa.Column("wall_steps", sa.Integer),
    sa.Column("n_inferences", sa.Integer),
    sa.Column("nfe", sa.BigInteger),
    sa.Column("vjp", sa.BigInteger),
    # v5: used action dimensions
    sa.Column("jerk_max_d1", sa.Double),
    sa.Column("jerk_mean_d1", sa.Double),
    sa.Column("jerk_max_d2", sa.Double),
    sa.Column("jerk_mean_d2", sa.Double),
)

# v2. No primary key on purpose: DuckDB's ART index makes bulk inserts of many rows slow, and the cell's
# single transaction already guarantees all-or-nothing per cell.
inferences = sa.Table(
    "inferences",
    metadata,
    sa.Column("cell_id", sa.String, nullable=False),
    sa.Column("rollout", sa.Integer, nullable=False),
    sa.Column("k", sa.Integer, nullable=False),  # 0 = the synchronous first chunk at step 0
    sa.Column("tau", sa.Integer, nullable=False),  # start step
    sa.Column("d", sa.Integer, nullable=False),  # drawn (true) delay, steps
    sa.Column("d_control", sa.Integer, nullable=False),  # delay on the control timeline (0 under sync's world pauses)
    sa.Column("dhat", sa.Integer, nullable=False),  # forecast, steps
    sa.Column("s", sa.Integer, nullable=False),  # actions consumed from the current chunk at tau
)

ROLLOUT_COLUMNS = tuple(c.name for c in rollouts.columns if c.name not in ("cell_id", "rollout"))
INFERENCE_COLUMNS = ("rollout", "k", "tau", "d", "d_control", "dhat", "s")

# Views: (name, SELECT). Created by migration step 2; later changes need a new step.
VIEWS_V2 = (
    (
        "v_cells",
        """
        SELECT c.*, r.status AS run_status, r.started_at AS run_started_at, r.scenario_version,
               r.git_commit, r.git_dirty, r.rtcbench_version, r.jax_backend, r.device_kind, r.host
        FROM cells c JOIN runs r USING (run_id)
        """,
    ),
    (
        "v_rollouts",
        """
        SELECT c.run_id, c.scenario, c.level, c.method, c.setup, c.comparability_key, ro.*
        FROM rollouts ro JOIN cells c USING (cell_id)
        """,
    ),
    (
        "v_delays",
        """
        SELECT c.run_id, c.scenario, c.level, c.method, c.setup, c.chunk_size, i.*,
               (i.d_control > c.chunk_size - i.s) AS violation, (i.d_control > i.dhat) AS forecast_miss
        FROM inferences i JOIN cells c USING (cell_id)
        WHERE i.k >= 1
        """,
    ),
)
