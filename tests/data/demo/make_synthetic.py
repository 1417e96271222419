#!/usr/bin/env python
"""The FORMER bundled demo (kept for tests that need its exact shape: 1,000 rows, 128-d, 40
cells spread over latitudes): the 40 real Major TOM Core-S2L2A samples of
``shared/data/majortom_core_s2l2a_meta`` (real cells, products, timestamps, CRSs and windows),
fragmented as the standard does (1068 px, 224 px fragments -> 5 x 5), with SYNTHETIC seeded
vectors (a per-sample cluster centre plus fragment noise). Standard-conformant GeoParquet.

    python tests/data/demo/make_synthetic.py --out /tmp/synthetic_demo.parquet [--dim 128]

or from a test: load this file with importlib and call ``build(dim, seed)`` -> pyarrow Table.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from mtquery.generate.fragment import core_window_origin, fragment_footprints, fragment_grid
from mtquery.standard.ids import unique_ids
from mtquery.standard.schema import arrow_schema, embedding_array, with_geo_metadata

HERE = Path(__file__).resolve().parent
META = HERE / "core_s2l2a_geotransform_sample.csv"


def build(dim: int = 128, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = list(csv.DictReader(META.open()))
    n_clusters = 6
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    cols: dict[str, list] = {k: [] for k in arrow_schema(dim).names}
    vecs = []
    pb = fragment_grid(1068, 224)
    for i, r in enumerate(rows):
        origin = core_window_origin(r["grid_cell"], r["crs"])
        fp = fragment_footprints(pb, origin, 10.0, r["crs"])
        centre = centres[i % n_clusters] + 0.3 * rng.normal(size=dim).astype(np.float32)
        v = centre + 0.15 * rng.normal(size=(len(pb), dim)).astype(np.float32)
        vecs.append(v)
        n = len(pb)
        cols["unique_id"] += unique_ids(fp.geometry, [r["timestamp"]] * n, [r["product_id"]] * n, v)
        cols["timestamp"] += [r["timestamp"]] * n
        cols["product_id"] += [r["product_id"]] * n
        cols["grid_cell"] += [r["grid_cell"]] * n
        cols["grid_row_u"] += [int(r["grid_row_u"])] * n
        cols["grid_col_r"] += [int(r["grid_col_r"])] * n
        cols["geometry"] += list(shapely.to_wkb(fp.geometry))
        cols["centre_lat"] += fp.centre_lat.tolist()
        cols["centre_lon"] += fp.centre_lon.tolist()
        cols["utm_footprint"] += list(shapely.to_wkt(fp.utm_geometry, rounding_precision=-1))
        cols["utm_crs"] += [r["crs"]] * n
        cols["pixel_bbox"] += pb.tolist()
    schema = arrow_schema(dim)
    arrays = []
    for field in schema:
        if field.name == "embedding":
            arrays.append(embedding_array(np.concatenate(vecs)))
        else:
            arrays.append(pa.array(cols[field.name], type=field.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    bounds = shapely.total_bounds(shapely.from_wkb(cols["geometry"])).tolist()
    return with_geo_metadata(table, bbox=bounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    table = build(a.dim, a.seed)
    pq.write_table(table, a.out, compression="zstd")
    print(f"wrote {a.out}: {table.num_rows} rows, dim {a.dim}")


if __name__ == "__main__":
    main()
