"""The standard columns of a table that lacks them, as SQL: one derivation for the views over
Parquet files and for Arrow batches read by pyarrow (the vector store, the index build,
extract and convert), so every path gives the same ids, centres and grid cells.

``fill(roles, types, base)`` returns the placeholders of ``sql/10_embeddings.sql``: the
``{source}`` relation (``base`` wrapped with the derived geometry and centre) and the column
expressions. For a standard file (``Roles.standard``) they are the columns themselves and
``base`` is read as it is: a standard dataset pays nothing.

The Major TOM grid cell of the centre comes from ``mtquery.standard.grid`` through vectorised
Arrow UDFs (``mtquery_grid_cell``/``_row``/``_col``, registered by ``register``); the CRS and
the id prefix are bound variables (``mtquery_crs``, ``mtquery_id_root``), never pasted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from mtquery.io.columns import Roles, geoarrow_depth, id_root

GRID_KM = 10.0
#: integer timestamp columns are epochs (UTC); the unit is read off the magnitude: below 1e11
#: seconds (to the year 5138), below 1e14 milliseconds, below 1e17 microseconds, else ns
EPOCH_TYPES = ("BIGINT", "INTEGER", "UBIGINT", "UINTEGER", "HUGEINT")
EPOCH_UNITS = ((100_000_000_000, 1_000_000), (100_000_000_000_000, 1_000),
               (100_000_000_000_000_000, 1))
#: optional columns -> SQL used when the file lacks them
OPTIONAL = {
    "grid_row_u": "CAST(NULL AS SMALLINT)",
    "grid_col_r": "CAST(NULL AS SMALLINT)",
    "utm_footprint": "CAST(NULL AS VARCHAR)",
    "utm_crs": "CAST(NULL AS VARCHAR)",
    "pixel_bbox": "CAST(NULL AS BIGINT[])",
    "bbox": "CAST(NULL AS STRUCT(xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE))",
}
_VECTOR_RE = re.compile(r"^(FLOAT|DOUBLE|REAL|TINYINT|DECIMAL\(\d+,\d+\))((?:\[\d*\])+)$")


def ident(name: str) -> str:
    """A column name as a quoted SQL identifier (names come from the file's schema)."""
    return '"' + name.replace('"', '""') + '"'


def vector_layout(dtype: str) -> tuple[bool, int | None]:
    """(nested Array2D, fixed dimension or None) of a vector column's DuckDB type."""
    m = _VECTOR_RE.match(dtype.replace(" ", ""))
    if not m:
        from mtquery.errors import DataError

        raise DataError(f"embedding column has type {dtype}; expected a list of numbers")
    dims = re.findall(r"\[(\d*)\]", m.group(2))
    if len(dims) > 2 or (len(dims) == 2 and dims[0] not in ("", "1")):
        from mtquery.errors import DataError

        raise DataError(f"embedding column has type {dtype}; expected FLOAT[] or "
                        "Array2D(1, dim)")
    return len(dims) == 2, (int(dims[-1]) if dims[-1] else None)


def flat_vector(column: str, dtype: str) -> str:
    """The vector column as a one-level list expression."""
    nested, _ = vector_layout(dtype)
    return f"flatten({ident(column)})" if nested else ident(column)


def timestamp_text(column: str | None, dtype: str | None) -> str:
    """The time column as text: a typed timestamp in UTC ISO form (with ``Z`` when it carries
    a time zone), epochs converted (unit from the magnitude), a string as it is."""
    if column is None or dtype is None:
        return "CAST(NULL AS VARCHAR)"
    c = ident(column)
    if dtype.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"strftime(timezone('UTC', {c}), '%Y-%m-%dT%H:%M:%S.%fZ')"
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return f"strftime(CAST({c} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%f')"
    if dtype in EPOCH_TYPES:
        t = f"CAST({c} AS BIGINT)"
        return ("strftime(make_timestamp(CASE "
                + " ".join(f"WHEN abs({t}) < {lim} THEN {t} * {mul}" for lim, mul in EPOCH_UNITS)
                + f" ELSE {t} // 1000 END), '%Y-%m-%dT%H:%M:%S.%fZ')")
    return f"CAST({c} AS VARCHAR)"


def geometry_expr(column: str, dtype: str, crs: str | None) -> str:
    """The geometry in lon/lat: GEOMETRY as it is, WKB parsed, a GeoArrow point built; a
    projected CRS transformed (the bound ``mtquery_crs``)."""
    c = ident(column)
    d = dtype.upper()
    depth = geoarrow_depth(dtype)
    if d.startswith("GEOMETRY"):
        g = c
    elif depth is not None:
        g = geoarrow_expr(c, depth)
    else:
        g = f"ST_GeomFromWKB({c})"
    if crs:
        g = f"ST_Transform({g}, getvariable('mtquery_crs'), 'OGC:CRS84', always_xy := true)"
    return g


def geoarrow_expr(c: str, depth: int) -> str:
    """A GeoArrow geometry (separated x/y structs) as GEOMETRY: point, linestring, polygon
    (shell and holes) or multipolygon, by list depth."""
    line = "ST_MakeLine(list_transform({r}, p -> ST_Point(p.x, p.y)))"

    def polygon(v: str) -> str:
        return (f"ST_MakePolygon({line.format(r=v + '[1]')}, list_transform({v}[2:], "
                f"r -> {line.format(r='r')}))")

    if depth == 0:
        return f"ST_Point({c}.x, {c}.y)"
    if depth == 1:
        return line.format(r=c)
    if depth == 2:
        return polygon(c)
    return f"ST_Collect(list_transform({c}, q -> {polygon('q')}))"


STANDARD_SOURCE = ("read_parquet(getvariable('mtquery_sources'), filename = true, "
                   "file_row_number = true)")


def fill(roles: Roles, types: dict[str, str], base: str = STANDARD_SOURCE) -> dict[str, str]:
    """The placeholders of the views (``{source}``, ``{embedding_flat}``, column
    expressions) for ``roles`` over the relation ``base`` with column ``types``."""
    out = {"source": base, "embedding_flat": flat_vector(roles.vector, types[roles.vector]),
           "timestamp_text": timestamp_text(roles.time, types.get(roles.time or ""))}
    for name, null_sql in OPTIONAL.items():
        out[name] = name if name in types else null_sql
    if roles.standard:
        out.update(unique_id="unique_id", product_id="product_id", grid_cell="grid_cell",
                   centre_lat="centre_lat", centre_lon="centre_lon",
                   geometry=geometry_expr("geometry", types["geometry"], None))
        return out
    if roles.geometry:
        g = geometry_expr(roles.geometry, types[roles.geometry], roles.crs)
    else:
        g = f"ST_Point(CAST({ident(roles.lon)} AS DOUBLE), CAST({ident(roles.lat)} AS DOUBLE))"
    if roles.lat:
        lat, lon = f"CAST({ident(roles.lat)} AS DOUBLE)", f"CAST({ident(roles.lon)} AS DOUBLE)"
    else:
        lat, lon = "ST_Y(ST_Centroid(__mtq_geometry))", "ST_X(ST_Centroid(__mtq_geometry))"
    out["source"] = (f"(SELECT *, {lat} AS __mtq_lat, {lon} AS __mtq_lon FROM "
                     f"(SELECT *, {g} AS __mtq_geometry FROM {base}))")
    if roles.id:
        uid = f"CAST({ident(roles.id)} AS VARCHAR)"
    else:
        uid = ("CASE WHEN starts_with(filename, getvariable('mtquery_id_root')) THEN "
               "substr(filename, length(getvariable('mtquery_id_root')) + 1) ELSE filename END"
               " || ':' || CAST(file_row_number AS VARCHAR)")
    out.update(
        unique_id=uid,
        product_id="product_id" if "product_id" in types else "CAST(NULL AS VARCHAR)",
        grid_cell=("grid_cell" if "grid_cell" in types
                   else "mtquery_grid_cell(__mtq_lat, __mtq_lon)"),
        grid_row_u=("grid_row_u" if "grid_row_u" in types
                    else "mtquery_grid_row(__mtq_lat, __mtq_lon)"),
        grid_col_r=("grid_col_r" if "grid_col_r" in types
                    else "mtquery_grid_col(__mtq_lat, __mtq_lon)"),
        geometry="__mtq_geometry", centre_lat="__mtq_lat", centre_lon="__mtq_lon")
    return out


def bind(con: duckdb.DuckDBPyConnection, roles: Roles, sources: Sequence[str]) -> None:
    """Register the grid UDFs and bind the variables a derivation reads (nothing for a
    standard file): derived ids name files relative to the folder holding ``sources``."""
    if roles.standard:
        return
    register(con)
    con.execute("SET VARIABLE mtquery_id_root = ?", [id_root(sources)])
    con.execute("SET VARIABLE mtquery_crs = ?", [roles.crs or "OGC:CRS84"])


def _rowcol(lat: pa.Array, lon: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from mtquery.standard.grid import latlon_to_rowcol

    la = np.asarray(lat.to_numpy(zero_copy_only=False), dtype=np.float64)
    lo = np.asarray(lon.to_numpy(zero_copy_only=False), dtype=np.float64)
    ok = np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90) & (np.abs(lo) <= 180)
    r = np.zeros(len(la), np.int64)
    c = np.zeros(len(la), np.int64)
    if ok.any():
        r[ok], c[ok] = latlon_to_rowcol(la[ok], lo[ok], GRID_KM)
    return r, c, ok


def _grid_cell(lat: pa.Array, lon: pa.Array) -> pa.Array:
    from mtquery.standard.grid import rowcol_to_cell

    r, c, ok = _rowcol(lat, lon)
    names = np.full(len(r), None, dtype=object)
    if ok.any():
        names[ok] = rowcol_to_cell(r[ok], c[ok], GRID_KM)
    return pa.array(names, pa.string())


def _grid_row(lat: pa.Array, lon: pa.Array) -> pa.Array:
    r, _, ok = _rowcol(lat, lon)
    return pa.array(r, pa.int16(), mask=~ok)


def _grid_col(lat: pa.Array, lon: pa.Array) -> pa.Array:
    _, c, ok = _rowcol(lat, lon)
    return pa.array(c, pa.int16(), mask=~ok)


def register(con: duckdb.DuckDBPyConnection) -> None:
    """The grid UDFs on ``con`` (once per connection)."""
    try:
        con.execute("SELECT mtquery_grid_cell(0.0, 0.0)")
        return
    except duckdb.Error:
        pass
    dbl = duckdb.sqltype("DOUBLE")
    for name, fn, ret in (("mtquery_grid_cell", _grid_cell, "VARCHAR"),
                          ("mtquery_grid_row", _grid_row, "SMALLINT"),
                          ("mtquery_grid_col", _grid_col, "SMALLINT")):
        con.create_function(name, fn, [dbl, dbl], duckdb.sqltype(ret), type="arrow",
                            null_handling="special", side_effects=False)
