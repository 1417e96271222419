-- acquisitions: one row per grid cell and acquisition (grid_cell, product_id, timestamp), i.e. one
-- Major TOM Core sample, with its fragment count, centre and footprint (envelope of its fragments).
CREATE OR REPLACE VIEW acquisitions AS
SELECT
    grid_cell,
    any_value(grid_row_u) AS grid_row_u,
    any_value(grid_col_r) AS grid_col_r,
    product_id,
    "timestamp",
    any_value(acquired_at) AS acquired_at,
    count(*) AS fragments,
    avg(centre_lat) AS centre_lat,
    avg(centre_lon) AS centre_lon,
    any_value(utm_crs) AS utm_crs,
    ST_Envelope_Agg(geometry) AS footprint
FROM embeddings
GROUP BY grid_cell, product_id, "timestamp";
