-- Per-rollout smoothness of the executed actions (first episode only), for box plots.
-- Parameter: $run_id.
SELECT level, setup, method, rollout, solved, jerk_max_d1, jerk_max_d2
FROM v_rollouts
WHERE run_id = $run_id
ORDER BY level, setup, method, rollout;
