-- Per-rollout outcomes of every cell of one run, for the study's paired tests: rollout b of two cells
-- of a run shares its env seed (and, inside a setup, its delay schedule). Smoothness: jerk_mean_d2 (mean
-- |second difference| per step, used action dims: the study's statistic) and jerk_max_d2 (its per-rollout
-- maximum, compared only in the naive forecaster check). Parameter: $run_id.
SELECT c.cell_id, c.level, c.setup, c.method, r.rollout, r.solved, r.jerk_mean_d2, r.jerk_max_d2
FROM rollouts r
JOIN cells c USING (cell_id)
WHERE c.run_id = $run_id
ORDER BY c.cell_id, r.rollout;
