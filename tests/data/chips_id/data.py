#!/usr/bin/env python
"""Chip embeddings in the shape of Clay v1.5 Sentinel-2 (``source.coop/clay``, as torchgeo's
``ClayEmbeddings`` reads them): ``chips_id`` (string), ``datetime`` (timestamp[us, tz=UTC]),
``embedding`` (fixed_size_list<float>[1024]), a polygon ``geometry`` (WKB; the 3 x 3 ninths,
~3.3 km, of real Major TOM cells) and a GeoParquet 1.1 ``bbox`` covering struct; ``geo``
metadata with the PROJJSON of OGC:CRS84, zstd.

    python tests/data/chips_id/data.py OUT_DIR [--rows 50] [--seed 0]

``write`` returns the file, ``OUT_DIR/chips.parquet``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_common import Rows, cli, geo_metadata, vectors, write_file  # noqa: E402
from foreign_common import rows as make_rows  # noqa: E402

DIM = 1024
NAME = "chips.parquet"
BBOX = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()),
                  ("xmax", pa.float64()), ("ymax", pa.float64())])


def truth(rows: int = 50, seed: int = 0) -> Rows:
    """The places, times, clusters and changes the rows were drawn from."""
    return make_rows(rows, seed, frag=3)


def table(rows: int = 50, seed: int = 0) -> pa.Table:
    r = truth(rows, seed)
    rng = np.random.default_rng([seed, 4])
    ids = ["-".join(rng.bytes(16).hex()[a:b] for a, b in ((0, 8), (8, 12), (12, 16),
                                                            (16, 20), (20, 32)))
           for _ in range(rows)]
    vec = vectors(r, DIM, seed).astype(np.float32)
    covering = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    geo = geo_metadata(["Polygon"], r.bounds, crs=CRS("OGC:CRS84").to_json_dict(),
                       covering=covering)
    b = r.bounds
    return pa.table({
        "chips_id": pa.array(ids, pa.string()),
        "datetime": pa.array(r.time.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), DIM),
        "geometry": pa.array(shapely.to_wkb(r.polygons()), pa.binary()),
        "bbox": pa.StructArray.from_arrays([pa.array(b[:, i]) for i in range(4)],
                                           fields=list(BBOX)),
    }).replace_schema_metadata({"geo": json.dumps(geo)})


def write(out: str | Path, rows: int = 50, seed: int = 0) -> Path:
    return write_file(table(rows, seed), out, NAME, compression="zstd")


if __name__ == "__main__":
    cli(write, __doc__)
