-- Timeline failure rates per cell: violation (d_k > H - s_k), stall-step fraction, forecast miss
-- (d_k > dhat_k), over-forecast (d_k < dhat_k) and the mean execution horizon. They describe the cell's
-- delay schedule, which every method of a setup shares (except `sync`, whose world pauses); the report
-- shows each distinct schedule once. Parameter: $run_id.
SELECT level, setup, method, violation_rate, stall_frac, forecast_miss_rate, over_forecast_rate, mean_exec_horizon
FROM cells
WHERE run_id = $run_id
ORDER BY level, setup, method;
