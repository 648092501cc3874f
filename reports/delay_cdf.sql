-- Empirical CDF of the drawn inference delays (steps) per delay setup, over asynchronous inferences
-- (k >= 1). Every method of a setup replays the same delay schedule (common random numbers), so one cell
-- per setup is used: the first by level, then method. Parameter: $run_id.
WITH one_cell AS (
    SELECT cell_id, setup
    FROM cells
    WHERE run_id = $run_id
    QUALIFY row_number() OVER (PARTITION BY setup ORDER BY level, method) = 1
),
counts AS (
    SELECT o.setup, i.d, count(*) AS n
    FROM inferences i JOIN one_cell o USING (cell_id)
    WHERE i.k >= 1
    GROUP BY o.setup, i.d
)
SELECT setup, d, n,
       sum(n) OVER (PARTITION BY setup ORDER BY d) / sum(n) OVER (PARTITION BY setup) AS cdf,
       sum(n) OVER (PARTITION BY setup) AS n_total
FROM counts
ORDER BY setup, d;
