-- Per-rollout smoothness of the executed actions (first episode only, the level's used action dimensions),
-- for the box plots, the findings and the paired tests against naive: jerk_mean_d2 (mean |second difference|
-- per step, the report's smoothness statistic) and jerk_max_d2 (the per-rollout maximum, Black et al.'s
-- proxy, which grows with episode length); the d1 columns are the same for the first difference.
-- Parameter: $run_id.
SELECT level, setup, method, rollout, solved, jerk_max_d1, jerk_max_d2, jerk_mean_d1, jerk_mean_d2
FROM v_rollouts
WHERE run_id = $run_id
ORDER BY level, setup, method, rollout;
