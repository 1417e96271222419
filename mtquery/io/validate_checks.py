"""The checks ``mtquery validate`` runs on each record batch of a file: geo metadata, time
values, vector lengths and values, grid consistency, pixel order."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from mtquery.errors import DataError, MTQueryError
from mtquery.io.validate_report import KM_PER_DEG, TIME_FORMS, Check, Report
from mtquery.standard.grid import parse_cells, rowcol_bounds
from mtquery.standard.pixel_order import detect_pixel_bbox_order
from mtquery.standard.schema import embedding_matrix, embedding_type
from mtquery.vectors.store import invalid_rows


def check_geo(meta: dict[bytes, bytes] | None, path: str, check: Check) -> None:
    check.checked += 1
    raw = (meta or {}).get(b"geo")
    if raw is None:
        check.fail(1, f"{path}: no 'geo' key in the Parquet metadata")
        return
    try:
        geo = json.loads(raw)
        col = geo["columns"][geo["primary_column"]]
    except (ValueError, KeyError, TypeError):
        check.fail(1, f"{path}: 'geo' metadata is not valid GeoParquet JSON")
        return
    if geo.get("primary_column") != "geometry":
        check.fail(1, f"{path}: primary_column is {geo.get('primary_column')!r}, not 'geometry'")
    elif str(col.get("encoding", "")).upper() != "WKB":
        check.fail(1, f"{path}: geometry encoding is {col.get('encoding')!r}, not WKB")
    elif "version" not in geo:
        check.fail(1, f"{path}: 'geo' metadata has no version")
    else:
        crs = col.get("crs")
        if crs is not None and not is_wgs84(crs):
            check.fail(1, f"{path}: geometry CRS is not WGS84 lon/lat")


def is_wgs84(crs: object) -> bool:
    try:
        from pyproj import CRS

        c = CRS.from_json_dict(crs) if isinstance(crs, dict) else CRS.from_user_input(crs)
        return c.equals(CRS("OGC:CRS84"), ignore_axis_order=True)
    except Exception:  # unparsable CRS: report as not WGS84
        return False


def one_line(exc: BaseException) -> str:
    """An exception's text on one printable line (Arrow / thrift messages span lines)."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return "".join(ch if ch.isprintable() else "?" for ch in text) or type(exc).__name__


class TimeParser:
    """Which timestamp strings the ``embeddings`` view cannot turn into ``acquired_at``:
    the view's own rule (S2 style first, then DuckDB's TIMESTAMPTZ cast), run in DuckDB."""

    # the view's acquired_at expression; DuckDB's special words (infinity, epoch...) parse
    # there too, hence the leading year
    SQL = ("SELECT v FROM _ts WHERE NOT regexp_matches(v, '^[0-9]{4}') OR NOT coalesce("
           "isfinite(coalesce(try_strptime(v, '%Y%m%dT%H%M%S'), "
           "timezone('UTC', TRY_CAST(v AS TIMESTAMPTZ)))), false)")

    def __init__(self) -> None:
        self._con = None

    def bad(self, values: pa.Array) -> pa.Array:
        """The distinct non-null ``values`` that do not parse."""
        if len(values) == 0:
            return values
        if self._con is None:
            import duckdb

            self._con = duckdb.connect()
            self._con.execute("SET TimeZone = 'UTC'")
        self._con.register("_ts", pa.table({"v": values}))
        try:
            return self._con.execute(self.SQL).to_arrow_table().column("v").combine_chunks()
        finally:
            self._con.unregister("_ts")

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def check_timestamps(batch: pa.RecordBatch, path: str, check: Check,
                      parser: TimeParser) -> None:
    col = batch.column("timestamp")
    check.checked += batch.num_rows
    bad_mask = pc.is_null(col)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        bad_values = parser.bad(pc.unique(col.drop_null()).cast(pa.string()))
        if len(bad_values):
            bad_mask = pc.or_(bad_mask, pc.is_in(col.cast(pa.string()), value_set=bad_values))
    bad = np.flatnonzero(bad_mask.to_numpy(zero_copy_only=False))
    if len(bad):
        i = int(bad[0])
        value = col[i].as_py()
        check.fail(len(bad), f"{path}: timestamp {value!r} of unique_id "
                   f"{batch.column('unique_id')[i]} is not {TIME_FORMS}: its acquired_at is "
                   "NULL, time filters never match it")


def vector_lengths(column: pa.Array) -> np.ndarray | None:
    """Length of every row's vector (-1 for a null vector), or None when the layout does not
    say (an Array2D row without exactly one vector)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    try:
        layout = embedding_type(column.type).layout
    except DataError:
        return None
    if layout == "array2d":
        outer = pc.list_value_length(column).fill_null(1).to_numpy(zero_copy_only=False)
        if (outer != 1).any():
            return None
        inner = pc.list_value_length(column.flatten()).to_numpy(zero_copy_only=False)
        out = np.full(len(column), -1, np.int64)
        out[np.asarray(column.is_valid())] = np.nan_to_num(inner, nan=-1).astype(np.int64)
        return out
    return pc.list_value_length(column).fill_null(-1).to_numpy(zero_copy_only=False)


def check_vectors(batch: pa.RecordBatch, path: str, report: Report) -> None:
    """Dimension (lengths tallied per file set) and direction (not null, zero, NaN, inf)."""
    ch = report.checks
    n = batch.num_rows
    col = batch.column("embedding")
    ids = batch.column("unique_id")
    lengths = vector_lengths(col)
    if lengths is None:
        ch["dimension"].fail(n, f"{path}: embedding rows do not hold one vector each")
        return
    ch["dimension"].checked += n
    ch["vectors"].checked += n
    ch["zero_vectors"].checked += n
    present = lengths >= 0
    for d, count in zip(*np.unique(lengths[present], return_counts=True), strict=True):
        d = int(d)
        report.dims.setdefault(d, path)
        report.dim_rows[d] = report.dim_rows.get(d, 0) + int(count)
        if d not in report.dim_example:
            i = int(np.flatnonzero(lengths == d)[0])
            report.dim_example[d] = f"unique_id {ids[i]} in {path}"
    nulls = np.flatnonzero(~present)
    ch["vectors"].fail(len(nulls), f"{path}: unique_id {ids[int(nulls[0])] if len(nulls) else ''}"
                       " has a null vector (no direction: knn skips such vectors, "
                       "cosine_distance gives NULL)")
    keep = np.flatnonzero(present & (lengths == (np.bincount(lengths[present]).argmax()
                                                 if present.any() else 0)))
    if len(keep) == 0:
        return
    rows = col.take(pa.array(keep)) if len(keep) != n else col
    mat = embedding_matrix(rows)
    bad = invalid_rows(mat)
    finite = np.isfinite(mat).all(axis=1)
    for name, rows_bad, kind in (("vectors", bad & ~finite, "NaN / infinite"),
                                 ("zero_vectors", bad & finite, "zero")):
        where = np.flatnonzero(rows_bad)
        if len(where):
            i = int(keep[where[0]])
            ch[name].fail(len(where), f"{path}: unique_id {ids[i]} has a {kind} vector (no "
                          "direction: knn skips such vectors, cosine_distance gives NULL)")


def check_batch(batch: pa.RecordBatch, path: str, report: Report, tol_km: float,
                 parser: TimeParser) -> None:
    ch = report.checks
    n = batch.num_rows
    try:
        check_vectors(batch, path, report)
    except DataError as exc:
        ch["dimension"].fail(n, f"{path}: {exc}")
    check_timestamps(batch, path, ch["timestamp"], parser)
    # geometry
    geoms = shapely.from_wkb(batch.column("geometry").to_numpy(zero_copy_only=False),
                             on_invalid="ignore")
    ch["geometry_valid"].checked += n
    valid = ~shapely.is_missing(geoms) & shapely.is_valid(geoms)
    bad = np.nonzero(~valid)[0]
    ch["geometry_valid"].fail(len(bad), f"{path}: row {bad[0] if len(bad) else 0} has a "
                              "missing or invalid geometry")
    # cell name vs row/col, and geometry inside its cell
    cells = batch.column("grid_cell").to_numpy(zero_copy_only=False)
    try:
        r, c = parse_cells(cells)
    except MTQueryError as exc:
        ch["cell_rowcol"].fail(n, f"{path}: {exc}")
        return
    rows_u = batch.column("grid_row_u").to_numpy(zero_copy_only=False)
    cols_r = batch.column("grid_col_r").to_numpy(zero_copy_only=False)
    ch["cell_rowcol"].checked += n
    bad = np.nonzero((r != rows_u) | (c != cols_r))[0]
    if len(bad):
        i = int(bad[0])
        ch["cell_rowcol"].fail(len(bad), f"{path}: grid_cell {cells[i]} but grid_row_u="
                               f"{rows_u[i]}, grid_col_r={cols_r[i]}")
    try:
        bounds = rowcol_bounds(r, c)
    except MTQueryError as exc:
        ch["geometry_in_cell"].fail(n, f"{path}: {exc}")
        return
    gb = shapely.bounds(geoms)
    ok_geom = valid
    lat_tol = tol_km / KM_PER_DEG
    coslat = np.cos(np.radians(np.clip(np.abs(bounds[:, 3]), 0, 89.0)))
    lon_tol = tol_km / (KM_PER_DEG * np.maximum(coslat, 1e-3))
    # cells spanning the antimeridian: shift fragment longitudes west of the cell by 360
    wrap = bounds[:, 2] > 180
    gx0 = np.where(wrap & (gb[:, 0] < bounds[:, 0] - lon_tol), gb[:, 0] + 360, gb[:, 0])
    gx1 = np.where(wrap & (gb[:, 2] < bounds[:, 0] - lon_tol), gb[:, 2] + 360, gb[:, 2])
    inside = ((gx0 >= bounds[:, 0] - lon_tol) & (gx1 <= bounds[:, 2] + lon_tol)
              & (gb[:, 1] >= bounds[:, 1] - lat_tol) & (gb[:, 3] <= bounds[:, 3] + lat_tol))
    ch["geometry_in_cell"].checked += int(ok_geom.sum())
    bad = np.nonzero(ok_geom & ~inside)[0]
    if len(bad):
        i = int(bad[0])
        ch["geometry_in_cell"].fail(
            len(bad), f"{path}: fragment {batch.column('unique_id')[i]} lies outside cell "
            f"{cells[i]} (+{tol_km} km)")


def pixel_order(tables: list[pa.Table]) -> str | None:
    if not tables:
        return None
    return detect_pixel_bbox_order(pa.concat_tables(tables, promote_options="permissive"))
