-- Distribution of the drawn inference delays d and of their forecasts dhat (steps) per delay setup, over
-- asynchronous inferences (k >= 1): one row per (setup, quantity, value) with its count and the survival
-- P(X > value). Every method of a setup replays the same delay schedule (common random numbers), so one
-- cell per setup is used: the first by level, then method, preferring a method whose world does not pause
-- (under `sync` the control timeline, and so the forecast, is 0). Parameter: $run_id.
WITH one_cell AS (
    SELECT cell_id, setup, dt_ms, chunk_size
    FROM cells
    WHERE run_id = $run_id
    QUALIFY row_number() OVER (
        PARTITION BY setup
        ORDER BY coalesce(json_extract_string(cell_config, '$.method.kind') = 'sync', false), level, method) = 1
),
draws AS (
    SELECT o.setup, o.dt_ms, o.chunk_size, 'delay' AS quantity, i.d AS value
    FROM inferences i JOIN one_cell o USING (cell_id)
    WHERE i.k >= 1
    UNION ALL
    SELECT o.setup, o.dt_ms, o.chunk_size, 'forecast' AS quantity, i.dhat AS value
    FROM inferences i JOIN one_cell o USING (cell_id)
    WHERE i.k >= 1
),
counts AS (
    SELECT setup, dt_ms, chunk_size, quantity, value, count(*) AS n
    FROM draws
    GROUP BY ALL
)
SELECT setup, dt_ms, chunk_size, quantity, value, n,
       sum(n) OVER (PARTITION BY setup, quantity) AS n_total,
       1.0 - sum(n) OVER (PARTITION BY setup, quantity ORDER BY value)
             / sum(n) OVER (PARTITION BY setup, quantity) AS survival
FROM counts
ORDER BY setup, quantity, value;
