#!/usr/bin/env python
"""A plain Parquet table of embeddings with no geometry at all, in the shape a pandas /
numpy pipeline writes: ``fid`` (int64), ``lat`` / ``lon`` (float64, the centre of a real
Major TOM cell), ``acquired`` (ISO 8601 string, ``2021-06-14T10:30:21Z``) and ``vector``
(fixed_size_list<halffloat>[64]). Several acquisitions for some places.

    python tests/data/latlon_f16/data.py OUT_DIR [--rows 50] [--seed 0]

``write`` returns the file, ``OUT_DIR/latlon.parquet``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_common import Rows, cli, vectors, write_file  # noqa: E402
from foreign_common import rows as make_rows  # noqa: E402

DIM = 64
NAME = "latlon.parquet"


def truth(rows: int = 50, seed: int = 0) -> Rows:
    """The places, times, clusters and changes the rows were drawn from."""
    return make_rows(rows, seed)


def table(rows: int = 50, seed: int = 0) -> pa.Table:
    r = truth(rows, seed)
    vec = vectors(r, DIM, seed).astype(np.float16)
    acquired = np.char.add(np.datetime_as_string(r.time, unit="s").astype(str), "Z")
    return pa.table({
        "fid": pa.array(np.arange(1, rows + 1, dtype=np.int64)),
        "lat": pa.array(r.lat),
        "lon": pa.array(r.lon),
        "acquired": pa.array(acquired.tolist(), pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel(), pa.float16()), DIM),
    })


def write(out: str | Path, rows: int = 50, seed: int = 0) -> Path:
    return write_file(table(rows, seed), out, NAME)


if __name__ == "__main__":
    cli(write, __doc__)
