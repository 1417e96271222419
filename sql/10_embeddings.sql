-- embeddings: one row per fragment with every standard column (docs/standard.md, "Output schema").
--   embedding    FLOAT[{dim}]  the vector, whatever its layout on disk (list, fixed-size list, Array2D)
--   timestamp    VARCHAR       acquisition time as written in the source metadata
--   acquired_at  TIMESTAMP     UTC, parsed from `timestamp`: S2 style 20200717T105031 or ISO 8601 (an offset
--                              is applied; no offset means UTC; the session time zone is UTC)
--   geometry     GEOMETRY      fragment footprint, WGS84 lon/lat
--   bbox         STRUCT        GeoParquet 1.1 bbox covering when the file has one, else NULL
--   source_file, source_row    where the row lives (file name, row number in that file)
-- Braced names are structural placeholders (column expressions chosen from the file's schema, mtquery.io.derive),
-- never user values; {source} is read_parquet over the bound variable `mtquery_sources` (a file lacking standard
-- columns: that relation with the derived geometry and centre, docs/columns.md).
CREATE OR REPLACE VIEW embeddings AS
SELECT
    {unique_id} AS unique_id,
    {embedding} AS embedding,
    {timestamp_text} AS "timestamp",
    coalesce(
        try_strptime({timestamp_text}, '%Y%m%dT%H%M%S'),
        timezone('UTC', TRY_CAST({timestamp_text} AS TIMESTAMPTZ))
    ) AS acquired_at,
    {product_id} AS product_id,
    {grid_cell} AS grid_cell,
    {grid_row_u} AS grid_row_u,
    {grid_col_r} AS grid_col_r,
    {geometry} AS geometry,
    CAST({centre_lat} AS DOUBLE) AS centre_lat,
    CAST({centre_lon} AS DOUBLE) AS centre_lon,
    {utm_footprint} AS utm_footprint,
    {utm_crs} AS utm_crs,
    {pixel_bbox} AS pixel_bbox,
    {bbox} AS bbox,
    filename AS source_file,
    file_row_number AS source_row
FROM {source};
