#!/usr/bin/env python
"""Point-chip embeddings in the shape of Earth Genome's Earth Index embeddings (GeoParquet as
torchgeo's ``EarthIndexEmbeddings`` reads it): ``id`` (string), ``embedding`` (list<float>
x 384) and a point ``geometry`` (WKB, the chip centre; GeoParquet ``geo`` metadata with no
``crs`` key: OGC:CRS84 by the spec), zstd. One annual-mosaic row a place, no time column;
the chips are the 2 x 2 quarters (~5 km) of real Major TOM cells.

    python tests/data/points_id/data.py OUT_DIR [--rows 50] [--seed 0]

``write`` returns the file, ``OUT_DIR/points.parquet``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_common import Rows, cli, geo_metadata, vectors, write_file  # noqa: E402
from foreign_common import rows as make_rows  # noqa: E402

DIM = 384
NAME = "points.parquet"


def truth(rows: int = 50, seed: int = 0) -> Rows:
    """The places, times, clusters and changes the rows were drawn from."""
    return make_rows(rows, seed, frag=2, max_times=1)


def table(rows: int = 50, seed: int = 0) -> pa.Table:
    r = truth(rows, seed)
    rng = np.random.default_rng([seed, 2])
    ids = [rng.bytes(8).hex() for _ in range(rows)]
    vec = vectors(r, DIM, seed).astype(np.float32)
    centres = np.column_stack([r.lon, r.lat, r.lon, r.lat])
    geo = geo_metadata(["Point"], centres)
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "embedding": pa.array(list(vec), pa.list_(pa.float32())),
        "geometry": pa.array(shapely.to_wkb(r.points()), pa.binary()),
    }).replace_schema_metadata({"geo": json.dumps(geo)})


def write(out: str | Path, rows: int = 50, seed: int = 0) -> Path:
    return write_file(table(rows, seed), out, NAME, compression="zstd")


if __name__ == "__main__":
    cli(write, __doc__)
