-- Every cell of one run with what the study page needs: identity, outcome with Wilson 95% interval,
-- delay statistics, smoothness (jerk_mean_d2 is the study's statistic), chunk size H (whether soft and hard
-- RTC differ, with the setup in cell_config) and cost (wall seconds = compile + run). Parameter: $run_id.
SELECT cell_id, level, setup, method, n_rollouts,
       solve_rate, solve_ci_low, solve_ci_high, length_mean,
       d_p50, d_p95, d_p99, d_max, dhat_p95, violation_rate, stall_frac, forecast_miss_rate,
       over_forecast_rate, mean_exec_horizon,
       jerk_max_d1, jerk_max_d2, jerk_mean_d2,
       nfe_per_inference, vjp_per_inference, nfe_per_env_step, inference_ms, env_steps_per_s,
       compile_s, run_s, compile_s + run_s AS wall_s, chunk_size, cell_config
FROM v_cells
WHERE run_id = $run_id
ORDER BY level, setup, method;
