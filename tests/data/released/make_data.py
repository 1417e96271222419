#!/usr/bin/env python
"""A seeded dataset laid out like the released Major TOM embedding sets (the dataset cards and
the published writer code): ``embeddings/part_XXXXX-YYYYY.parquet``, rows ordered south to
north by grid row (then column, time), a few large row groups per part, the vector as a
variable-length ``list<float>``, ``geometry`` WKB with GeoParquet 1.0.0-beta metadata and no
bbox covering column, ``timestamp`` strings like ``20230119T161811``, ``pixel_bbox`` a list of
int64, ``centre_lat`` / ``centre_lon`` doubles. Rows and vectors come from ``mtquery.synth``
(real Core cells, 5 x 5 fragments an acquisition, clustered unit vectors).

    python tests/data/released/make_data.py OUT_DIR [--rows 24000] [--dim 64] [--parts 4]
        [--row-group-size 2000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtquery.synth import SynthSpec, VectorModel, metadata

SOURCES_PER_PART = 50  # the release names a part by the source files it covers


def geo_1_0_beta(bbox: list[float] | None) -> dict:
    from pyproj import CRS

    col: dict = {"encoding": "WKB", "geometry_types": ["Polygon"],
                 "crs": CRS("EPSG:4326").to_json_dict()}  # as geopandas writes it
    if bbox is not None:
        col["bbox"] = bbox
    return {"version": "1.0.0-beta.1", "primary_column": "geometry", "columns": {"geometry": col}}


def release_table(rows: int, dim: int, seed: int = 0) -> pa.Table:
    """Every row of the dataset, south to north (grid row, column, time, fragment)."""
    spec = SynthSpec(rows=rows, dim=dim, seed=seed, latent=min(96, dim, max(8, dim // 2)))
    meta = metadata(spec)
    order = pc.sort_indices(meta, sort_keys=[("grid_row_u", "ascending"),
                                             ("grid_col_r", "ascending"),
                                             ("timestamp", "ascending"),
                                             ("unique_id", "ascending")])
    meta = meta.take(order)
    vec = VectorModel(spec).vectors(meta, np.random.default_rng(seed + 3))
    emb = pa.ListArray.from_arrays(pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32)),
                                   pa.array(vec.reshape(-1)))
    cols = {
        "unique_id": meta.column("unique_id"),
        "embedding": emb,
        "timestamp": meta.column("timestamp"),
        "product_id": meta.column("product_id"),
        "grid_cell": meta.column("grid_cell"),
        "grid_row_u": meta.column("grid_row_u").cast(pa.int64()),
        "grid_col_r": meta.column("grid_col_r").cast(pa.int64()),
        "geometry": meta.column("geometry"),
        "centre_lat": meta.column("centre_lat").cast(pa.float64()),
        "centre_lon": meta.column("centre_lon").cast(pa.float64()),
        "utm_footprint": meta.column("utm_footprint"),
        "utm_crs": meta.column("utm_crs"),
        "pixel_bbox": meta.column("pixel_bbox"),
    }
    return pa.table(cols)


def write_release(out: str | Path, rows: int = 24_000, dim: int = 64, parts: int = 4,
                  row_group_size: int = 2_000, seed: int = 0, geo_bbox: bool = False,
                  chunk: int = 250_000) -> list[Path]:
    """Write the parts under ``out/embeddings/``; returns their paths."""
    table = release_table(rows, dim, seed)
    root = Path(out) / "embeddings"
    root.mkdir(parents=True, exist_ok=True)
    per_part = -(-rows // parts)
    paths = []
    for p in range(parts):
        part = table.slice(p * per_part, per_part)
        if part.num_rows == 0:
            break
        bbox = None
        if geo_bbox:
            import shapely

            bbox = [float(v) for v in shapely.total_bounds(
                shapely.from_wkb(part.column("geometry").to_numpy(zero_copy_only=False)))]
        schema = part.schema.with_metadata({"geo": json.dumps(geo_1_0_beta(bbox))})
        first = p * SOURCES_PER_PART + 1
        path = root / f"part_{first:05d}-{first + SOURCES_PER_PART - 1:05d}.parquet"
        with pq.ParquetWriter(path, schema, compression="snappy") as w:
            for lo in range(0, part.num_rows, chunk):
                w.write_table(part.slice(lo, chunk).replace_schema_metadata(schema.metadata),
                              row_group_size=row_group_size)
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=24_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--row-group-size", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for p in write_release(a.out, a.rows, a.dim, a.parts, a.row_group_size, a.seed):
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
