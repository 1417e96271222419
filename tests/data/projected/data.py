#!/usr/bin/env python
"""Embeddings whose footprints are in a projected CRS, as a pipeline working in the
Sentinel-2 tile's UTM zone writes them: polygon ``geometry`` in EPSG:32633 (UTM 33N, metres;
GeoParquet ``geo`` metadata with that CRS's PROJJSON from pyproj), ``id`` (string), ``emb``
(list<float> x 128) and ``timestamp`` (string, ``20210614T103021``). The places are real
Major TOM cells in central Europe (all inside zone 33N); each footprint is the 10 km x 10 km
UTM square around its cell's centre (the centre transformed back to lon/lat is the cell's
centre, so the derived grid cell is that cell); several acquisitions for some places.

    python tests/data/projected/data.py OUT_DIR [--rows 50] [--seed 0]

``write`` returns the file, ``OUT_DIR/utm33n.parquet``; ``truth`` the rows (lon/lat cells,
clusters) it was made from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS, Transformer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_common import REGIONS, Rows, cli, geo_metadata, vectors, write_file  # noqa: E402
from foreign_common import rows as make_rows  # noqa: E402

DIM = 128
EPSG = 32633
NAME = "utm33n.parquet"
REGION = REGIONS[5]  # central Europe, 13-17 E: inside UTM zone 33 (12-18 E)


HALF = 5_000.0  # metres: half the side of a footprint


def truth(rows: int = 50, seed: int = 0) -> Rows:
    """The places (lon/lat), times, clusters and changes the rows were drawn from."""
    return make_rows(rows, seed, regions=(REGION,))


def table(rows: int = 50, seed: int = 0) -> pa.Table:
    r = truth(rows, seed)
    to_utm = Transformer.from_crs("OGC:CRS84", f"EPSG:{EPSG}", always_xy=True)
    x, y = to_utm.transform(r.lon, r.lat)
    polys = shapely.box(x - HALF, y - HALF, x + HALF, y + HALF)
    geo = geo_metadata(["Polygon"], shapely.bounds(polys),
                       crs=CRS.from_epsg(EPSG).to_json_dict())
    ts = np.datetime_as_string(r.time, unit="s").astype(str)
    ts = np.char.replace(np.char.replace(ts, "-", ""), ":", "")
    return pa.table({
        "id": pa.array([f"t33-{seed}-{i:04d}" for i in range(rows)], pa.string()),
        "timestamp": pa.array(ts.tolist(), pa.string()),
        "emb": pa.array(list(vectors(r, DIM, seed).astype(np.float32)),
                        pa.list_(pa.float32())),
        "geometry": pa.array(shapely.to_wkb(polys), pa.binary()),
    }).replace_schema_metadata({"geo": json.dumps(geo)})


def write(out: str | Path, rows: int = 50, seed: int = 0) -> Path:
    return write_file(table(rows, seed), out, NAME)


if __name__ == "__main__":
    cli(write, __doc__)
