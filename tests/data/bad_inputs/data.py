#!/usr/bin/env python
"""Embedding files that cannot be read as they are, one for each refusal mtquery must give
in one line (and write nothing): every file is otherwise well-formed GeoParquet (WKB polygon
``geometry`` of real Major TOM cells, ``geo`` metadata, an ``id``) unless its case says so.

- ``two_vectors``: two numeric list columns, ``features`` and ``vector`` (both candidates)
- ``no_vector``: geometry, id and a timestamp, no list column
- ``ragged``: ``embedding`` list<float> whose rows have differing lengths (32 and 31)
- ``empty``: valid Parquet with 0 rows (and an ``embedding`` column)
- ``zero_bytes``: a 0-byte file
- ``not_geometry``: a column named ``geometry`` holding plain strings (``"hello"``), no
  ``geo`` metadata, beside a good ``embedding``

    python tests/data/bad_inputs/data.py OUT_DIR [--rows 50] [--seed 0]

``write`` returns ``OUT_DIR``; ``NAMES`` maps each case to its file name there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foreign_common import Rows, cli, geo_metadata, vectors  # noqa: E402
from foreign_common import rows as make_rows  # noqa: E402

DIM = 32
NAMES = {
    "two_vectors": "two_vectors.parquet",
    "no_vector": "no_vector.parquet",
    "ragged": "ragged.parquet",
    "empty": "empty.parquet",
    "zero_bytes": "zero_bytes.parquet",
    "not_geometry": "not_geometry.parquet",
}


def truth(rows: int = 50, seed: int = 0) -> Rows:
    """The places, times, clusters and changes the rows were drawn from."""
    return make_rows(rows, seed)


def _list(vec: np.ndarray) -> pa.Array:
    return pa.array(list(vec.astype(np.float32)), pa.list_(pa.float32()))


def _geo(columns: dict, r: Rows) -> pa.Table:
    cols = {"id": pa.array(np.arange(len(r.place), dtype=np.int64)), **columns,
            "geometry": pa.array(shapely.to_wkb(r.polygons()), pa.binary())}
    return pa.table(cols).replace_schema_metadata(
        {"geo": json.dumps(geo_metadata(["Polygon"], r.bounds))})


def tables(rows: int = 50, seed: int = 0) -> dict[str, pa.Table]:
    """Every case but ``zero_bytes``, as Arrow tables."""
    r = truth(rows, seed)
    vec = vectors(r, DIM, seed)
    other = vectors(r, DIM, seed + 1)
    ts = pa.array(r.time.astype("datetime64[us]"), pa.timestamp("us"))
    ragged = [v[: DIM - (i % 2)] for i, v in enumerate(vec.astype(np.float32))]
    empty = _geo({"embedding": _list(vec)}, r).slice(0, 0)
    return {
        "two_vectors": _geo({"features": _list(vec), "vector": _list(other)}, r),
        "no_vector": _geo({"timestamp": ts}, r),
        "ragged": _geo({"embedding": pa.array(ragged, pa.list_(pa.float32()))}, r),
        "empty": empty.replace_schema_metadata(
            {"geo": json.dumps(geo_metadata(["Polygon"], np.empty((0, 4))))}),
        "not_geometry": pa.table({
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "embedding": _list(vec),
            "geometry": pa.array(["hello"] * rows, pa.string()),
        }),
    }


def write(out: str | Path, rows: int = 50, seed: int = 0) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for case, table in tables(rows, seed).items():
        pq.write_table(table, out / NAMES[case])
    (out / NAMES["zero_bytes"]).write_bytes(b"")
    return out


if __name__ == "__main__":
    cli(write, __doc__)
