"""``mtquery validate``: check files against the Major TOM embedding standard (STANDARD.md §6).

Streams each file by record batch (bounded memory); cross-file checks (one dimension, unique
ids) are accumulated as it goes. Every check reports PASS/FAIL with a count and an example.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from mtquery.datasets import resolve
from mtquery.errors import DataError, MTQueryError
from mtquery.grid import parse_cells, rowcol_bounds
from mtquery.pixel_order import detect_pixel_bbox_order
from mtquery.progress import ProgressCallback, emit
from mtquery.schema import check_columns, embedding_matrix

BATCH_ROWS = 32_768
DEFAULT_TOLERANCE_KM = 2.0
KM_PER_DEG = 111.32

CHECKS = ("columns", "geo_metadata", "dimension", "finite_vectors", "geometry_valid",
          "geometry_in_cell", "cell_rowcol", "unique_id")


@dataclass
class Check:
    name: str
    failures: int = 0
    checked: int = 0
    example: str | None = None
    skipped: str | None = None

    def fail(self, count: int, example: str) -> None:
        if count:
            self.failures += count
            if self.example is None:
                self.example = example

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        return "PASS" if self.failures == 0 else "FAIL"


@dataclass
class Report:
    files: list[str]
    rows: int = 0
    dims: dict[int, str] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=lambda: {n: Check(n) for n in CHECKS})
    pixel_bbox_order: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks.values())

    def as_dict(self) -> dict:
        return {
            "ok": self.ok, "files": self.files, "rows": self.rows,
            "dims": sorted(self.dims), "pixel_bbox_order": self.pixel_bbox_order,
            "checks": [{"check": c.name, "status": c.status, "failures": c.failures,
                        "checked": c.checked, "example": c.example or c.skipped}
                       for c in self.checks.values()],
        }


def _check_geo(meta: dict[bytes, bytes] | None, path: str, check: Check) -> None:
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
        if crs is not None and not _is_wgs84(crs):
            check.fail(1, f"{path}: geometry CRS is not WGS84 lon/lat")


def _is_wgs84(crs: object) -> bool:
    try:
        from pyproj import CRS

        c = CRS.from_json_dict(crs) if isinstance(crs, dict) else CRS.from_user_input(crs)
        return c.equals(CRS("OGC:CRS84"), ignore_axis_order=True)
    except Exception:  # unparsable CRS: report as not WGS84
        return False


def _check_batch(batch: pa.RecordBatch, path: str, report: Report, tol_km: float) -> None:
    ch = report.checks
    n = batch.num_rows
    # vectors: dimension + finiteness
    try:
        mat = embedding_matrix(batch.column("embedding"))
        report.dims.setdefault(mat.shape[1], path)
        ch["dimension"].checked += n
        finite = np.isfinite(mat).all(axis=1)
        ch["finite_vectors"].checked += n
        bad = np.nonzero(~finite)[0]
        ch["finite_vectors"].fail(len(bad), f"{path}: row of unique_id "
                                  f"{batch.column('unique_id')[int(bad[0])] if len(bad) else ''}"
                                  " holds NaN/inf")
    except DataError as exc:
        ch["dimension"].fail(n, f"{path}: {exc}")
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


def _pixel_order(tables: list[pa.Table]) -> str | None:
    if not tables:
        return None
    return detect_pixel_bbox_order(pa.concat_tables(tables, promote_options="permissive"))


def validate(paths: Sequence[str] | str, tolerance_km: float = DEFAULT_TOLERANCE_KM,
             progress: ProgressCallback | None = None) -> Report:
    """Validate local files (paths, directories or globs) against the standard."""
    ds = resolve(list(paths) if not isinstance(paths, str) else paths)
    if ds.remote:
        raise DataError("validate reads local files; download the remote files first")
    report = Report(files=[str(f) for f in ds.local_files])
    total_rows = None
    ids: list[np.ndarray] = []
    order_sample: list[pa.Table] = []
    for f in ds.local_files:
        path = str(f)
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        schema = pf.schema_arrow
        _check_geo(schema.metadata, path, report.checks["geo_metadata"])
        problems = check_columns(schema)
        report.checks["columns"].checked += 1
        if problems:
            report.checks["columns"].fail(len(problems), f"{path}: {problems[0]}")
            report.rows += pf.metadata.num_rows
            continue
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            _check_batch(batch, path, report, tolerance_km)
            ids.append(batch.column("unique_id").to_numpy(zero_copy_only=False))
            report.rows += batch.num_rows
            if len(order_sample) < 8:
                order_sample.append(pa.Table.from_batches([batch]).select(
                    ["grid_cell", "product_id", "timestamp", "pixel_bbox", "centre_lat",
                     "centre_lon"]))
            emit(progress, "validating", batch.num_rows, total=total_rows, unit="rows")
    _check_dims(report)
    _check_unique(report, ids)
    report.pixel_bbox_order = _pixel_order(order_sample)
    return report


def _check_dims(report: Report) -> None:
    ch = report.checks["dimension"]
    if len(report.dims) > 1:
        detail = ", ".join(f"{d} (e.g. {p})" for d, p in sorted(report.dims.items()))
        ch.fail(1, f"mixed embedding dimensions: {detail}")


def _check_unique(report: Report, ids: list[np.ndarray]) -> None:
    ch = report.checks["unique_id"]
    if not ids:
        ch.skipped = "no rows"
        return
    arr = pa.chunked_array([pa.array(a, pa.string()) for a in ids])
    ch.checked = len(arr)
    if arr.null_count:
        ch.fail(arr.null_count, "null unique_id values")
    counts = pc.value_counts(arr.drop_null())
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        ch.fail(int(pc.sum(dup.field("counts")).as_py()) - len(dup),
                f"unique_id {dup[0]['values'].as_py()} appears {dup[0]['counts'].as_py()} times")
