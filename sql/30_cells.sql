-- cells: one row per grid cell with how often and when it was observed.
CREATE OR REPLACE VIEW cells AS
SELECT
    grid_cell,
    any_value(grid_row_u) AS grid_row_u,
    any_value(grid_col_r) AS grid_col_r,
    count(DISTINCT (product_id, "timestamp")) AS acquisitions,
    count(*) AS fragments,
    min(acquired_at) AS first_acquired,
    max(acquired_at) AS last_acquired,
    avg(centre_lat) AS centre_lat,
    avg(centre_lon) AS centre_lon,
    ST_Envelope_Agg(geometry) AS footprint
FROM embeddings
GROUP BY grid_cell;
