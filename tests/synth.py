"""Seeded synthetic datasets in the standard schema, for tests (small squares around random
centres in a region, clustered vectors, S2-style and ISO timestamps mixed)."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from mtquery.standard.grid import latlon_to_rowcol, rowcol_to_cell
from mtquery.standard.schema import arrow_schema, embedding_array, with_geo_metadata

REGION = (-10.0, 40.0, 10.0, 50.0)  # min_lon, min_lat, max_lon, max_lat
HALF = 0.01  # fragment half-size in degrees


def make_table(n: int = 1000, dim: int = 16, seed: int = 0, iso_share: float = 0.3,
               embedding_layout: str = "fixed") -> pa.Table:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(REGION[0] + 0.1, REGION[2] - 0.1, n)
    lat = rng.uniform(REGION[1] + 0.1, REGION[3] - 0.1, n)
    geoms = shapely.box(lon - HALF, lat - HALF, lon + HALF, lat + HALF)
    r, c = latlon_to_rowcol(lat, lon)
    cells = rowcol_to_cell(r, c)
    base = dt.datetime(2018, 1, 1)
    secs = rng.integers(0, 6 * 365 * 86400, n)
    times = [base + dt.timedelta(seconds=int(s)) for s in secs]
    iso = rng.random(n) < iso_share
    ts = [t.isoformat() + "Z" if i else t.strftime("%Y%m%dT%H%M%S") for t, i in zip(times, iso)]
    centres = rng.normal(size=(12, dim)).astype(np.float32)
    vec = centres[rng.integers(0, 12, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    ids = [hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(n)]
    schema = arrow_schema(dim)
    cols = {
        "unique_id": ids, "timestamp": ts, "product_id": [f"P{i % 97}" for i in range(n)],
        "grid_cell": cells, "grid_row_u": r, "grid_col_r": c,
        "geometry": shapely.to_wkb(geoms), "centre_lat": lat, "centre_lon": lon,
        "utm_footprint": ["POLYGON EMPTY"] * n, "utm_crs": ["EPSG:32631"] * n,
        "pixel_bbox": [[0, 0, 224, 224]] * n,
    }
    arrays = []
    for f in schema:
        if f.name == "embedding":
            arrays.append(_embedding(vec, embedding_layout))
            continue
        arrays.append(pa.array(list(cols[f.name]) if f.name == "pixel_bbox" else cols[f.name],
                               type=f.type))
    fields = [f if f.name != "embedding" else pa.field("embedding", arrays[i].type)
              for i, f in enumerate(schema)]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return with_geo_metadata(table, bbox=list(shapely.total_bounds(geoms)))


def _embedding(vec: np.ndarray, layout: str) -> pa.Array:
    if layout == "fixed":
        return embedding_array(vec)
    if layout == "list":
        return pa.array(list(vec), pa.list_(pa.float32()))
    if layout == "array2d":
        return pa.array([[v] for v in vec], pa.list_(pa.list_(pa.float32())))
    raise ValueError(layout)


def write(table: pa.Table, path, row_group_size: int | None = None) -> str:
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def vectors(table: pa.Table) -> np.ndarray:
    from mtquery.standard.schema import embedding_matrix

    return embedding_matrix(table.column("embedding"))
