"""Render result tables as table | json | csv | parquet | geojson, to stdout or a file
(atomically). A WKB ``geometry`` column becomes GeoJSON features and GeoParquet metadata, so
QGIS, geopandas and DuckDB open the output as a layer."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mtquery.errors import UsageError
from mtquery.io.fsio import atomic_path, atomic_write_text

Format = Literal["table", "json", "csv", "parquet", "geojson"]
FORMATS = ("table", "json", "csv", "parquet", "geojson")
#: formats that carry each row's footprint (query commands add ``geometry`` for them)
GEO_FORMATS = ("parquet", "geojson")


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def to_records(table: pa.Table) -> list[dict]:
    return [{k: _jsonable(v) for k, v in row.items()} for row in table.to_pylist()]


def to_json(table: pa.Table) -> str:
    return json.dumps(to_records(table), indent=2)


def to_csv(table: pa.Table) -> str:
    buf = io.BytesIO()
    pacsv.write_csv(_flat_for_csv(table), buf)
    return buf.getvalue().decode()


def _flat_for_csv(table: pa.Table) -> pa.Table:
    cols = []
    for col in table.columns:
        t = col.type
        if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_struct(t):
            col = pa.array([json.dumps(_jsonable(v)) for v in col.to_pylist()], pa.string())
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            col = pa.array([None if v is None else v.hex() for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


def _fmt_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.6e}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_fmt_cell(v) for v in value[:6])
        return f"[{inner}{', ...' if len(value) > 6 else ''}]"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


#: In tables (for people), ids are shortened; ``knn --id`` accepts such a prefix.
SHORT_ID = 16


def _pipe_width() -> int:
    """Width of tables written to a pipe or file: $COLUMNS when set, else 200."""
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 200


def print_table(table: pa.Table, title: str | None = None, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = file or sys.stdout
    width = None if (file is None and out.isatty()) else _pipe_width()
    console = Console(file=out, width=width)
    rt = Table(title=title, show_lines=False)
    for name in table.column_names:
        rt.add_column(name, overflow="fold")
    for row in table.to_pylist():
        cells = []
        for key, v in row.items():
            if key == "unique_id" and isinstance(v, str) and len(v) > SHORT_ID:
                v = v[:SHORT_ID] + "…"
            cells.append(_fmt_cell(v))
        rt.add_row(*cells)
    console.print(rt)


def write_rows(table: pa.Table, fmt: str = "table", output: str | Path | None = None,
               title: str | None = None) -> None:
    """Write a result table in ``fmt`` to ``output`` (atomically) or stdout."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise UsageError("--format parquet needs --output FILE")
        with atomic_path(output) as tmp:
            write_parquet(table, tmp)
        return
    if fmt == "table":
        if output is None:
            print_table(table, title)
            return
        buf = io.StringIO()
        print_table(table, title, file=buf)
        text = buf.getvalue()
    elif fmt == "json":
        text = to_json(table) + "\n"
    elif fmt == "geojson":
        text = to_geojson(table) + "\n"
    else:
        text = to_csv(table)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(output, text)


def check_output_args(fmt: str, output: str | Path | None) -> None:
    """Validate --format/--output before any work is done."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs --output FILE")
    if output is not None and Path(output).is_dir():
        raise UsageError(f"--output {output} is a directory; give a file name")


def has_geometry(table: pa.Table) -> bool:
    """Whether ``table`` has a WKB ``geometry`` column."""
    if "geometry" not in table.column_names:
        return False
    t = table.schema.field("geometry").type
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _geometries(table: pa.Table) -> tuple[list[dict | None], list[str]]:
    """GeoJSON geometries of the rows and the columns they came from: the WKB ``geometry``,
    else the box of min/max lon/lat columns (``cell``), else the centre point."""
    import shapely
    from shapely.geometry import mapping

    names = table.column_names
    if has_geometry(table):
        geoms = shapely.from_wkb(table.column("geometry").to_pylist())
        return [None if g is None else mapping(g) for g in geoms], ["geometry"]
    box_cols = ["min_lon", "min_lat", "max_lon", "max_lat"]
    if all(c in names for c in box_cols):
        rows = zip(*(table.column(c).to_pylist() for c in box_cols))
        return [mapping(shapely.box(*b)) if None not in b else None for b in rows], box_cols
    if "centre_lat" in names and "centre_lon" in names:
        pts = zip(table.column("centre_lon").to_pylist(), table.column("centre_lat").to_pylist())
        return [None if None in p else {"type": "Point", "coordinates": list(p)}
                for p in pts], []
    raise UsageError("--format geojson needs a geometry column (WKB), min/max lon/lat or "
                     "centre_lat/centre_lon columns", "format")


def geojson_dict(table: pa.Table) -> dict:
    """A GeoJSON FeatureCollection (RFC 7946: WGS84 lon/lat): one feature per row, the other
    columns as properties (the values of ``--format json``)."""
    geoms, used = _geometries(table)
    props = to_records(table.drop_columns([c for c in used if c == "geometry"]))
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": p, "geometry": g}
                         for p, g in zip(props, geoms)]}


def to_geojson(table: pa.Table) -> str:
    return json.dumps(geojson_dict(table), allow_nan=False)


def geoparquet(table: pa.Table) -> pa.Table:
    """``table`` with GeoParquet 1.1 metadata (WKB, EPSG:4326, geometry types, bbox) when it
    has a WKB ``geometry`` column; unchanged otherwise."""
    if not has_geometry(table):
        return table
    import pyproj
    import shapely

    geoms = shapely.from_wkb(table.column("geometry").to_pylist())
    valid = geoms[~shapely.is_missing(geoms)]
    types = sorted({g.geom_type for g in valid})
    column = {"encoding": "WKB", "geometry_types": types,
              "crs": pyproj.CRS.from_epsg(4326).to_json_dict()}
    if len(valid):
        column["bbox"] = [float(v) for v in shapely.total_bounds(valid)]
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}
    i = table.schema.get_field_index("geometry")
    table = table.set_column(i, pa.field("geometry", table.schema.field(i).type),
                             table.column(i))  # drop geoarrow field metadata: "geo" rules
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo).encode()
    return table.replace_schema_metadata(meta)


def with_embedding_block(table: pa.Table) -> pa.Table:
    """``table`` with the embedding metadata block (``mtquery.io.embmeta``) when it has an
    ``embedding`` column of vectors of one length and no block yet; unchanged otherwise."""
    from mtquery.errors import DataError
    from mtquery.io.embmeta import KEY, block, dtype_name, with_block

    if "embedding" not in table.column_names or KEY in (table.schema.metadata or {}):
        return table
    t = table.schema.field("embedding").type
    if pa.types.is_fixed_size_list(t):
        dim = t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        import pyarrow.compute as pc

        lengths = pc.list_value_length(table.column("embedding"))
        low, high = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if low is None or low != high:
            return table  # no vectors, or of several lengths: nothing to describe
        dim = low
    else:
        return table
    try:
        blk = block(dim, dtype_name(t))
    except DataError:  # a value type the block does not name
        return table
    return table.replace_schema_metadata(with_block(table.schema, blk).metadata)


def write_parquet(table: pa.Table, where: str | Path | io.BytesIO) -> None:
    """Parquet (GeoParquet when the table has a WKB geometry; with the embedding metadata
    block when it has vectors) to a path or buffer."""
    pq.write_table(with_embedding_block(geoparquet(table)), where)
