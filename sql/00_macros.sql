-- Macros for everyday SQL on embeddings.
-- cosine_distance(a, b): 1 - cosine similarity of two FLOAT[dim] vectors (what `mtquery knn` reports).
CREATE OR REPLACE MACRO cosine_distance(a, b) AS 1 - array_cosine_similarity(a, b);
-- in_bbox(geom, min_lon, min_lat, max_lon, max_lat): the geometry intersects the lon/lat box.
CREATE OR REPLACE MACRO in_bbox(geom, min_lon, min_lat, max_lon, max_lat) AS
    ST_Intersects(geom, ST_MakeEnvelope(min_lon, min_lat, max_lon, max_lat));
