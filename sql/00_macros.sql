-- Macros for everyday SQL on embeddings.
-- cosine_distance(a, b): 1 - cosine similarity of two FLOAT[dim] vectors, in [0, 2] (what `mtquery knn`
-- reports). NULL when either vector is zero or holds NaN / infinite values: such vectors have no direction,
-- knn skips them (and says how many), validate flags them.
CREATE OR REPLACE MACRO cosine_distance(a, b) AS
    CASE WHEN isfinite(array_inner_product(a, a)) AND array_inner_product(a, a) > 0
          AND isfinite(array_inner_product(b, b)) AND array_inner_product(b, b) > 0
         THEN greatest(0.0, least(2.0, 1 - array_cosine_similarity(a, b))) END;
-- in_bbox(geom, min_lon, min_lat, max_lon, max_lat): the geometry intersects the lon/lat box.
CREATE OR REPLACE MACRO in_bbox(geom, min_lon, min_lat, max_lon, max_lat) AS
    ST_Intersects(geom, ST_MakeEnvelope(min_lon, min_lat, max_lon, max_lat));
