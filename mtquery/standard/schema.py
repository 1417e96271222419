"""The Major TOM embedding GeoParquet schema (docs/standard.md, "Output schema"): columns,
Arrow types, layouts.

One row per fragment. ``embedding`` is accepted in the three layouts seen in the wild:
``list<float>``, ``fixed_size_list<float>[dim]`` and the released cards' ``Array2D(1, dim)``
(a list of one list). mtquery writes ``fixed_size_list<float32>[dim]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError

EMBEDDING = "embedding"
GEOMETRY = "geometry"

#: Column name -> (Arrow type, meaning). The embedding type is written per dimension.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "unique_id": (pa.string(), "SHA-256 hex of geometry WKT, timestamp, product_id, embedding"),
    "embedding": (pa.list_(pa.float32()), "the vector"),
    "timestamp": (pa.string(), "acquisition time as given by the source metadata"),
    "product_id": (pa.string(), "source product"),
    "grid_cell": (pa.string(), "Major TOM cell name, e.g. 451U_946L"),
    "grid_row_u": (pa.int16(), "signed grid row (U positive, D negative)"),
    "grid_col_r": (pa.int16(), "signed grid column (R positive, L negative)"),
    "geometry": (pa.binary(), "fragment footprint, WKB polygon, WGS84"),
    "centre_lat": (pa.float32(), "latitude of the footprint centroid"),
    "centre_lon": (pa.float32(), "longitude of the footprint centroid"),
    "utm_footprint": (pa.string(), "footprint in the product CRS, WKT"),
    "utm_crs": (pa.string(), "product CRS, e.g. EPSG:32630"),
    "pixel_bbox": (pa.list_(pa.int64()), "[row_off, col_off, row_off + f, col_off + f]"),
}

#: Columns a dataset must have to be queried; the others may be absent (NULL in the views).
REQUIRED = ("unique_id", "embedding", "timestamp", "product_id", "grid_cell", "geometry",
            "centre_lat", "centre_lon")

EmbeddingLayout = Literal["list", "fixed", "array2d"]


@dataclass(frozen=True)
class EmbeddingType:
    layout: EmbeddingLayout
    dim: int | None  # known from the type for fixed layouts, else None


def _is_float(t: pa.DataType) -> bool:
    """Vector values: floats (16, 32, 64 bits) or int8 (quantised vectors, read as floats)."""
    return pa.types.is_floating(t) or pa.types.is_int8(t)


def embedding_type(t: pa.DataType) -> EmbeddingType:
    """Classify an embedding column's Arrow type; raises DataError for anything else."""
    if pa.types.is_fixed_size_list(t) and _is_float(t.value_type):
        return EmbeddingType("fixed", t.list_size)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_float(t.value_type):
        return EmbeddingType("list", None)
    is_outer = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if is_outer:
        inner = t.value_type
        if pa.types.is_fixed_size_list(inner) and _is_float(inner.value_type):
            return EmbeddingType("array2d", inner.list_size)
        if (pa.types.is_list(inner) or pa.types.is_large_list(inner)) and _is_float(
            inner.value_type
        ):
            return EmbeddingType("array2d", None)
    raise DataError(f"embedding column has type {t}; expected a list of floats "
                    "(list<float>, fixed_size_list<float>[dim] or Array2D(1, dim))")


def embedding_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(n, dim) float32 matrix from an embedding column in any accepted layout.

    Raises DataError when rows differ in length or hold nulls.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    et = embedding_type(column.type)
    if column.null_count:
        raise DataError("embedding column has null vectors")
    arr = column
    if et.layout == "array2d":
        arr = column.flatten()
        if len(arr) != n:
            raise DataError("Array2D embeddings must hold exactly one vector per row")
    values = arr.flatten()
    if n == 0:
        return np.zeros((0, et.dim or 0), dtype=np.float32)
    if values.null_count:
        raise DataError("embedding vectors hold null values")
    if len(values) % n:
        raise DataError("mixed embedding dimensions in one column")
    dim = len(values) // n
    if not pa.types.is_fixed_size_list(arr.type):
        offsets = np.asarray(arr.offsets)
        lengths = np.diff(offsets)
        if (lengths != dim).any():
            raise DataError(
                f"mixed embedding dimensions: {sorted(set(lengths.tolist()))[:5]} in one column"
            )
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, dim)


def embedding_array(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """The written layout: fixed_size_list<float32>[dim] from an (n, dim) matrix."""
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1])


def arrow_schema(dim: int) -> pa.Schema:
    """The schema mtquery writes for a given embedding dimension."""
    fields = []
    for name, (typ, doc) in COLUMNS.items():
        if name == EMBEDDING:
            typ = pa.list_(pa.float32(), dim)
        fields.append(pa.field(name, typ, metadata={"description": doc}))
    return pa.schema(fields)


def geo_metadata(bbox: list[float] | None = None, covering: bool = False) -> dict:
    """GeoParquet 1.1 ``geo`` metadata for the WKB ``geometry`` column in WGS84."""
    from pyproj import CRS

    col: dict = {"encoding": "WKB", "geometry_types": ["Polygon"],
                 "crs": CRS("OGC:CRS84").to_json_dict()}
    if bbox is not None:
        col["bbox"] = [float(v) for v in bbox]
    if covering:
        col["covering"] = {
            "bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}
        }
    return {"version": "1.1.0", "primary_column": GEOMETRY, "columns": {GEOMETRY: col}}


def with_geo_metadata(table: pa.Table, bbox: list[float] | None = None,
                      covering: bool = False) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo_metadata(bbox, covering)).encode()
    return table.replace_schema_metadata(meta)


def check_columns(schema: pa.Schema) -> list[str]:
    """Problems with a file's columns and types against the standard (empty list = fine)."""
    problems = []
    for name, (typ, _) in COLUMNS.items():
        if name not in schema.names:
            problems.append(f"missing column {name!r}")
            continue
        actual = schema.field(name).type
        if name == EMBEDDING:
            try:
                embedding_type(actual)
            except DataError as exc:
                problems.append(str(exc))
        elif name == "pixel_bbox":
            if not (pa.types.is_list(actual) or pa.types.is_fixed_size_list(actual)
                    or pa.types.is_large_list(actual)) or not pa.types.is_integer(
                        actual.value_type):
                problems.append(f"column 'pixel_bbox' has type {actual}, expected a list of ints")
        elif name in ("grid_row_u", "grid_col_r"):
            if not pa.types.is_integer(actual):
                problems.append(f"column {name!r} has type {actual}, expected {typ}")
        elif name in ("centre_lat", "centre_lon"):
            if not pa.types.is_floating(actual):
                problems.append(f"column {name!r} has type {actual}, expected {typ}")
        elif name == GEOMETRY:
            if not (pa.types.is_binary(actual) or pa.types.is_large_binary(actual)):
                problems.append(f"column 'geometry' has type {actual}, expected WKB binary")
        elif not (pa.types.is_string(actual) or pa.types.is_large_string(actual)):
            problems.append(f"column {name!r} has type {actual}, expected {typ}")
    return problems
