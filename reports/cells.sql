-- One row per cell (level x method x delay setup) of a run: outcomes with Wilson 95% intervals,
-- smoothness, delay statistics and cost. Parameter: $run_id.
SELECT level, setup, method, n_rollouts,
       solve_rate, solve_ci_low, solve_ci_high, return_mean, length_mean, solves_per_1000_wall_steps,
       jerk_max_d1, jerk_max_d2, jerk_mean_d1, jerk_mean_d2,
       d_p50, d_p95, d_p99, d_max, dhat_p50, dhat_p95, violation_rate, stall_frac, forecast_miss_rate,
       over_forecast_rate, mean_exec_horizon,
       nfe_per_inference, vjp_per_inference, nfe_per_env_step, inference_ms, inference_ms_p10, inference_ms_p90, env_steps_per_s,
       compile_s, chunk_size, flow_steps, dt_ms, max_steps
FROM v_cells
WHERE run_id = $run_id
ORDER BY level, setup, method;
