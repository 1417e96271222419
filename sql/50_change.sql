-- cell_change(before_start, before_end, after_start, after_end): per grid cell, 1 - cosine similarity of the mean
-- unit vector of its fragments acquired in [before_start, before_end) and the same in [after_start, after_end)
-- (UTC; zero / invalid vectors left out), cells seen in both periods only, largest change first. What
-- `mtquery change` computes:
--   SELECT * FROM cell_change(TIMESTAMP '2020-01-01', TIMESTAMP '2021-01-01',
--                             TIMESTAMP '2023-01-01', TIMESTAMP '2024-01-01') LIMIT 10;
CREATE OR REPLACE MACRO cell_change(before_start, before_end, after_start, after_end) AS TABLE
WITH tagged AS (
    SELECT grid_cell, acquired_at,
           CASE WHEN acquired_at >= before_start AND acquired_at < before_end THEN 0
                WHEN acquired_at >= after_start AND acquired_at < after_end THEN 1 END AS period,
           CAST(embedding AS FLOAT[]) AS v,
           sqrt(list_inner_product(CAST(embedding AS FLOAT[]), CAST(embedding AS FLOAT[]))) AS norm
    FROM embeddings
), unit AS (
    SELECT grid_cell, period, acquired_at, list_transform(v, x -> x / norm) AS u
    FROM tagged WHERE period IS NOT NULL AND norm > 0 AND isfinite(norm)
), parts AS (
    SELECT grid_cell, period, unnest(u) AS x, generate_subscripts(u, 1) AS i FROM unit
), means AS (
    SELECT grid_cell, period, list(x ORDER BY i) AS m
    FROM (SELECT grid_cell, period, i, avg(x) AS x FROM parts GROUP BY ALL) GROUP BY ALL
), stats AS (
    SELECT grid_cell, period, count(*) AS n, min(acquired_at) AS first, max(acquired_at) AS last
    FROM unit GROUP BY ALL
)
SELECT b.grid_cell,
       greatest(0.0, least(2.0, 1 - list_cosine_similarity(b.m, a.m))) AS distance,
       sb.n AS before_n, sa.n AS after_n, sb.first AS before_first, sb.last AS before_last,
       sa.first AS after_first, sa.last AS after_last
FROM means b
JOIN means a ON a.grid_cell = b.grid_cell AND b.period = 0 AND a.period = 1
JOIN stats sb ON sb.grid_cell = b.grid_cell AND sb.period = 0
JOIN stats sa ON sa.grid_cell = a.grid_cell AND sa.period = 1
ORDER BY distance DESC, b.grid_cell;
