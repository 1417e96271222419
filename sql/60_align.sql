-- aligned(other): the fragments of this dataset joined, fragment by fragment, with the same fragments in another
-- dataset (another model's embeddings of the same Core samples): same grid_cell, product_id and pixel_bbox.
-- unique_id differs across models (it hashes the vector), so it cannot be the key. `other` is a file, glob or
-- list of files (bind it: SELECT * FROM aligned(?)); other_embedding keeps the other file's layout.
CREATE OR REPLACE MACRO aligned(other) AS TABLE
SELECT e.grid_cell, e.product_id, e.pixel_bbox, e."timestamp", e.centre_lat, e.centre_lon,
       e.unique_id, o.unique_id AS other_unique_id,
       e.embedding, o.embedding AS other_embedding
FROM embeddings e
JOIN read_parquet(other) o
  ON o.grid_cell = e.grid_cell
 AND o.product_id = e.product_id
 AND CAST(o.pixel_bbox AS BIGINT[]) = e.pixel_bbox;
