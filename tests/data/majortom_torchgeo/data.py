#!/usr/bin/env python
"""Major TOM embeddings as the torchgeo loader reads them (``torchgeo.datasets.MajorTOMEmbeddings``;
the shape of torchgeo's own test fixture): ``embeddings/part_00001-00050.parquet`` written by
geopandas with no CRS, columns ``embedding`` (list<double> x 2048), ``centre_lon`` /
``centre_lat`` (int64: rounded degrees), ``timestamp`` (timestamp[ns]) and a polygon
``geometry`` (WKB; the whole ~10 km grid cell) -- no ``unique_id``, ``product_id`` or
``grid_cell``. GeoParquet ``geo`` metadata with ``"crs": null`` (and the geometry field
tagged ``geoarrow.wkb``) as geopandas writes it; ``geo=False`` drops both (plain Parquet
with a binary WKB column).

    python tests/data/majortom_torchgeo/data.py OUT_DIR [--rows 50] [--seed 0] [--no-geo]

``write`` returns ``OUT_DIR`` (the dataset folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_common import Rows, cli, vectors  # noqa: E402
from foreign_common import rows as make_rows  # noqa: E402

DIM = 2048
PART = "embeddings/part_00001-00050.parquet"


def truth(rows: int = 50, seed: int = 0) -> Rows:
    """The places, times, clusters and changes the rows were drawn from."""
    return make_rows(rows, seed)


def frame(rows: int = 50, seed: int = 0) -> gpd.GeoDataFrame:
    r = truth(rows, seed)
    data = {
        "embedding": list(vectors(r, DIM, seed)),
        "centre_lon": np.round(r.lon).astype(np.int64),
        "centre_lat": np.round(r.lat).astype(np.int64),
        "timestamp": pd.to_datetime(r.time).as_unit("ns"),
    }
    return gpd.GeoDataFrame(data, geometry=r.polygons())


def write(out: str | Path, rows: int = 50, seed: int = 0, *, geo: bool = True) -> Path:
    out = Path(out)
    path = out / PART
    path.parent.mkdir(parents=True, exist_ok=True)
    frame(rows, seed).to_parquet(path, compression="snappy")
    if not geo:  # plain Parquet: no ``geo`` metadata, no GeoArrow field metadata
        table = pq.read_table(path)
        meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"geo"}
        schema = pa.schema([f.remove_metadata() for f in table.schema], metadata=meta)
        pq.write_table(table.cast(schema), path, compression="snappy")
    return out


if __name__ == "__main__":
    cli(lambda out, rows, seed, no_geo: write(out, rows, seed, geo=not no_geo), __doc__,
        **{"--no-geo": "no GeoParquet metadata"})
