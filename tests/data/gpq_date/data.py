#!/usr/bin/env python
"""Chip embeddings in the shape of Clay v0 (``source.coop/clay/clay-model-v0-embeddings``, as
torchgeo's ``ClayEmbeddings`` reads them): a ``.gpq`` file (GeoParquet under another
extension) with ``id`` (int64), ``date`` (date32), ``embeddings`` (list<float> x 768) and a
polygon ``geometry`` (WKB; the 2 x 2 quarters, ~5 km, of real Major TOM cells), ``geo``
metadata with the PROJJSON of EPSG:4326 (coordinates lon/lat, GeoParquet's axis order), zstd.

    python tests/data/gpq_date/data.py OUT_DIR [--rows 50] [--seed 0]

``write`` returns the file, ``OUT_DIR/01WCN_20190518_20231021_v001.gpq``.
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

DIM = 768
NAME = "01WCN_20190518_20231021_v001.gpq"


def truth(rows: int = 50, seed: int = 0) -> Rows:
    """The places, times, clusters and changes the rows were drawn from."""
    return make_rows(rows, seed, frag=2)


def table(rows: int = 50, seed: int = 0) -> pa.Table:
    r = truth(rows, seed)
    vec = vectors(r, DIM, seed).astype(np.float32)
    geo = geo_metadata(["Polygon"], r.bounds, crs=CRS.from_epsg(4326).to_json_dict())
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "date": pa.array(r.time.astype("datetime64[D]"), pa.date32()),
        "embeddings": pa.array(list(vec), pa.list_(pa.float32())),
        "geometry": pa.array(shapely.to_wkb(r.polygons()), pa.binary()),
    }).replace_schema_metadata({"geo": json.dumps(geo)})


def write(out: str | Path, rows: int = 50, seed: int = 0) -> Path:
    return write_file(table(rows, seed), out, NAME, compression="zstd")


if __name__ == "__main__":
    cli(write, __doc__)
