-- Provenance of one run. Parameter: $run_id.
SELECT run_id, scenario, scenario_version, scenario_path, config_hash, status, error,
       started_at, ended_at, wall_s, compile_s, n_cells_planned, n_rollouts_override, device_request,
       jax_backend, device_kind, host, git_commit, git_dirty, rtcbench_version, jax_version, jaxlib_version,
       flax_version, kinetix_version, duckdb_version, python_version,
       executor, device_count, rollout_shards, cell_filter, overrides
FROM runs
WHERE run_id = $run_id;
