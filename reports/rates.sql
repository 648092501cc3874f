-- Timeline failure rates per cell: violation (d_k > H - s_k), stall-step fraction, forecast miss
-- (d_k > dhat_k) and over-forecast (d_k < dhat_k). Parameter: $run_id.
SELECT level, setup, method, violation_rate, stall_frac, forecast_miss_rate, over_forecast_rate
FROM cells
WHERE run_id = $run_id
ORDER BY level, setup, method;
