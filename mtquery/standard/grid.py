"""The Major TOM grid (arXiv 2402.12095, reference ``MajorTOM/grid.py``), vectorised with numpy.

Rows: ``n = ceil(pi * R / d)`` south-west latitudes, ``sort(mod(linspace(-90, 90, n + 1)[:-1],
180) - 90)``; the row at 0 deg is ``0U``, north ``1U, 2U..``, south ``1D, 2D..``. Columns of a row
at latitude ``phi``: ``m = ceil(2 * pi * R * cos(phi) / d)`` longitudes built the same way from
``linspace(-180, 180, m + 1)``. A cell is named by its south-west point (``451U_946L``).

No per-row longitude table is materialised: the value at sorted position ``k`` of a row is
recomputed with exactly the floating-point operations of ``numpy.linspace`` + ``numpy.mod``, so
results are bit-identical to the reference's arrays for any spacing ``d``.

Boundaries: the spec assigns a point to the last grid point ``<=`` it (``boundary="spec"``,
the default). The reference uses ``searchsorted(..) - 1`` (left side), which puts a point lying
exactly on a grid line into the cell below / to the left; ``boundary="reference"`` reproduces
that. The two differ only for coordinates exactly equal to a grid line. The reference also
limits rows to latitudes -85..85; mtquery's grid covers the whole globe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtquery.errors import UsageError

RADIUS_EQUATOR_KM = 6378.137
DEFAULT_DIST_KM = 10.0

Boundary = Literal["spec", "reference"]

_CELL_PATTERN = r"^(?P<r>\d+)(?P<rd>[UD])_(?P<c>\d+)(?P<cd>[LR])$"


@dataclass(frozen=True)
class _Rows:
    """Row table of a grid spacing: sorted SW latitudes and how each row's columns are laid."""

    lats: np.ndarray  # (n,) float64, sorted south to north
    ncols: np.ndarray  # (n,) int64, columns in each row
    i0: np.ndarray  # (n,) int64, first linspace index >= 0 (see _lon_at)
    step: np.ndarray  # (n,) float64, 360 / ncols
    first: np.ndarray  # (n,) float64, longitude of each row's westernmost point
    zero_row: int  # index of the row at latitude 0 (0U)
    zero_col: np.ndarray  # (n,) int64, sorted position of longitude 0 in each row (0R)
    max_col: int
    row_labels: pa.Array  # (n,) "451U" ...
    col_labels: pa.Array  # (2 * max_col + 1,) labels of col_r = -max_col .. max_col


def _first_nonnegative(num: np.ndarray, step: np.ndarray, half: float) -> np.ndarray:
    """Smallest i with ``i * step - half >= 0`` (float64 arithmetic as numpy.linspace does it)."""
    guess = np.ceil(half / step).astype(np.int64)
    for _ in range(2):  # correct rounding at the boundary
        below = (guess - 1 >= 0) & (((guess - 1).astype(np.float64) * step + (-half)) >= 0)
        guess = np.where(below, guess - 1, guess)
        above = (guess.astype(np.float64) * step + (-half)) < 0
        guess = np.where(above, guess + 1, guess)
    return np.minimum(guess, num)


def _lon_at(m: np.ndarray, i0: np.ndarray, step: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Longitude at sorted position ``k`` of a row's points,
    ``sort(mod(linspace(-180, 180, m + 1)[:-1], 360) - 180)``.

    ``linspace`` computes ``i * step + start``; values with ``i >= i0`` are negative after the
    shift and come first once sorted. Reproduces numpy's arithmetic exactly.
    """
    n_neg = m - i0
    i = np.where(k < n_neg, i0 + k, k - n_neg)
    return np.mod(i.astype(np.float64) * step + (-180.0), 360.0) - 180.0


def _labels(values: np.ndarray, pos: str, neg: str) -> pa.Array:
    return pc.binary_join_element_wise(
        pa.array(np.abs(values)).cast(pa.string()), pa.array(np.where(values >= 0, pos, neg)), ""
    )


@lru_cache(maxsize=16)
def _rows(dist_km: float) -> _Rows:
    if not (dist_km > 0 and math.isfinite(dist_km)):
        raise UsageError(f"grid spacing must be a positive number of km, e.g. 10 (got {dist_km})")
    n = math.ceil(math.pi * RADIUS_EQUATOR_KM / dist_km)
    lats = np.sort(np.mod(np.linspace(-90, 90, n + 1)[:-1], 180) - 90)
    zero_row = int(np.searchsorted(lats, 0))
    ncols = np.array(
        [
            math.ceil(2 * math.pi * (RADIUS_EQUATOR_KM * math.cos(lat * math.pi / 180)) / dist_km)
            for lat in lats.tolist()
        ],
        dtype=np.int64,
    )
    ncols = np.maximum(ncols, 1)
    step = 360.0 / ncols.astype(np.float64)
    i0 = _first_nonnegative(ncols, step, 180.0)
    first = _lon_at(ncols, i0, step, np.zeros_like(ncols))
    max_col = int(ncols.max())
    return _Rows(
        lats=lats, ncols=ncols, i0=i0, step=step, first=first, zero_row=zero_row,
        zero_col=(ncols - i0) % ncols, max_col=max_col,
        row_labels=_labels(np.arange(n) - zero_row, "U", "D"),
        col_labels=_labels(np.arange(-max_col, max_col + 1), "R", "L"),
    )


def n_rows(dist_km: float = DEFAULT_DIST_KM) -> int:
    """Number of grid rows for a spacing (2,004 for the 10 km Core grid)."""
    return int(_rows(float(dist_km)).lats.size)


def _as_float_array(values: object, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1:
        raise UsageError(f"{name} must be a scalar or a 1-d sequence")
    return arr


def _check_latlon(lats: np.ndarray, lons: np.ndarray) -> None:
    if lats.shape != lons.shape:
        raise UsageError(f"lats and lons differ in length ({lats.size} vs {lons.size})")
    bad = ~((lats >= -90) & (lats <= 90))
    if bad.any():
        raise UsageError(f"latitude must be within -90..90, e.g. 40.58 (got {lats[bad][0]})")
    bad = ~((lons >= -180) & (lons <= 180))
    if bad.any():
        raise UsageError(f"longitude must be within -180..180, e.g. -111.66 (got {lons[bad][0]})")


def _row_index(rows: _Rows, lats: np.ndarray, boundary: Boundary) -> np.ndarray:
    side = "right" if boundary == "spec" else "left"
    idx = np.searchsorted(rows.lats, lats, side=side) - 1
    if boundary == "reference":
        return np.mod(idx, rows.lats.size)  # the reference indexes with -1 -> last row
    return np.clip(idx, 0, rows.lats.size - 1)


def _col_index(rows: _Rows, ri: np.ndarray, lons: np.ndarray, boundary: Boundary) -> np.ndarray:
    """Sorted position, within row ``ri``, of the last point ``<=`` (spec) or ``<`` (reference)."""
    m, i0, step = rows.ncols[ri], rows.i0[ri], rows.step[ri]
    k = np.minimum(np.floor((lons - rows.first[ri]) / step).astype(np.int64), m - 1)
    k = np.maximum(k, 0)

    def ok(pos: np.ndarray) -> np.ndarray:
        val = _lon_at(m, i0, step, pos)
        return (val <= lons) if boundary == "spec" else (val < lons)

    # The arithmetic estimate is off by at most one position either way.
    bad = ~ok(k)
    k = np.where(bad & (k > 0), k - 1, k)
    up = (k + 1 < m) & ~bad
    up[up] = ok(np.minimum(k + 1, m - 1))[up]
    k = np.where(up, k + 1, k)
    # West of the row's first point (rows whose points start east of -180): the reference's
    # searchsorted(..) - 1 == -1 picks the last column, whose cell spans the antimeridian.
    # This is the known answer (-63.121, -178.892) @ 1000 km -> 8D_7R.
    return np.where((k == 0) & bad, m - 1, k)


def latlon_to_rowcol(
    lats: object,
    lons: object,
    dist_km: float = DEFAULT_DIST_KM,
    boundary: Boundary = "spec",
) -> tuple[np.ndarray, np.ndarray]:
    """Signed grid row (U positive, D negative) and column (R positive, L negative) of points."""
    la = _as_float_array(lats, "lats")
    lo = _as_float_array(lons, "lons")
    _check_latlon(la, lo)
    rows = _rows(float(dist_km))
    ri = _row_index(rows, la, boundary)
    ci = _col_index(rows, ri, lo, boundary)
    return ri - rows.zero_row, ci - rows.zero_col[ri]


def rowcol_to_cell(
    row_u: object, col_r: object, dist_km: float = DEFAULT_DIST_KM
) -> np.ndarray:
    """Cell names (``451U_946L``) from signed row / column integers."""
    rows = _rows(float(dist_km))
    r = np.atleast_1d(np.asarray(row_u, dtype=np.int64))
    c = np.atleast_1d(np.asarray(col_r, dtype=np.int64))
    if r.size and (np.abs(r).max() > rows.lats.size or np.abs(c).max() > rows.max_col):
        return pc.binary_join_element_wise(
            _labels(r, "U", "D"), _labels(c, "R", "L"), "_"
        ).to_numpy(zero_copy_only=False)
    rlab = rows.row_labels.take(pa.array(r + rows.zero_row))
    clab = rows.col_labels.take(pa.array(c + rows.max_col))
    return pc.binary_join_element_wise(rlab, clab, "_").to_numpy(zero_copy_only=False)


def latlon_to_cell(
    lats: object,
    lons: object,
    dist_km: float = DEFAULT_DIST_KM,
    boundary: Boundary = "spec",
) -> np.ndarray:
    """Names of the grid cells holding each point, e.g. ``(40.5829, -111.6556) -> 451U_946L``."""
    r, c = latlon_to_rowcol(lats, lons, dist_km, boundary)
    return rowcol_to_cell(r, c, dist_km)


def parse_cells(names: object) -> tuple[np.ndarray, np.ndarray]:
    """Signed (row_u, col_r) of cell names; a malformed name raises UsageError."""
    arr = pa.array(np.atleast_1d(np.asarray(names, dtype=object)), type=pa.string())
    if arr.null_count:
        raise UsageError("grid cell names must not be null")
    ok = pc.match_substring_regex(arr, _CELL_PATTERN)
    if not pc.all(ok).as_py():
        bad = arr.filter(pc.invert(ok))[0].as_py()
        raise UsageError(f"not a grid cell name: {bad!r} (expected e.g. '451U_946L')")
    parts = pc.extract_regex(arr, _CELL_PATTERN)
    r = parts.field("r").cast(pa.int64()).to_numpy()
    c = parts.field("c").cast(pa.int64()).to_numpy()
    south = pc.equal(parts.field("rd"), "D").to_numpy(zero_copy_only=False)
    west = pc.equal(parts.field("cd"), "L").to_numpy(zero_copy_only=False)
    bad = (south & (r == 0)) | (west & (c == 0))
    if bad.any():
        raise UsageError(f"not a grid cell name: {arr[int(np.argmax(bad))].as_py()!r} "
                         "(there is no 0D row or 0L column)")
    return np.where(south, -r, r), np.where(west, -c, c)


def rowcol_bounds(
    row_u: object, col_r: object, dist_km: float = DEFAULT_DIST_KM
) -> np.ndarray:
    """(n, 4) [min_lon, min_lat, max_lon, max_lat] of cells given by signed row / column.

    The last column of a row whose points start east of -180 spans the antimeridian: its
    max_lon is then above 180 (the first point of the row + 360).
    """
    rows = _rows(float(dist_km))
    r = np.atleast_1d(np.asarray(row_u, dtype=np.int64))
    c = np.atleast_1d(np.asarray(col_r, dtype=np.int64))
    ri = r + rows.zero_row
    bad = (ri < 0) | (ri >= rows.lats.size)
    if bad.any():
        raise UsageError(f"grid row {r[bad][0]} does not exist at {dist_km} km spacing")
    m, i0, step = rows.ncols[ri], rows.i0[ri], rows.step[ri]
    k = c + rows.zero_col[ri]
    bad = (k < 0) | (k >= m)
    if bad.any():
        raise UsageError(f"grid column {c[bad][0]} does not exist in row {r[bad][0]}")
    n = rows.lats.size
    lat_lo = rows.lats[ri]
    lat_hi = np.where(ri + 1 < n, rows.lats[np.minimum(ri + 1, n - 1)], 90.0)
    lon_lo = _lon_at(m, i0, step, k)
    nxt = _lon_at(m, i0, step, np.where(k + 1 < m, k + 1, 0))
    lon_hi = np.where(k + 1 < m, nxt, nxt + 360.0)
    return np.column_stack([lon_lo, lat_lo, lon_hi, lat_hi])


def cell_bounds(names: object, dist_km: float = DEFAULT_DIST_KM) -> np.ndarray:
    """(n, 4) [min_lon, min_lat, max_lon, max_lat] of named cells; the SW corner is the name."""
    r, c = parse_cells(names)
    return rowcol_bounds(r, c, dist_km)


def cells_in_bbox(
    min_lon: float,
    min_lat: float,
    max_lon: float,
    max_lat: float,
    dist_km: float = DEFAULT_DIST_KM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cell holding part of a bbox: (names, row_u, col_r), south to north, west to east.

    A cell that spans the antimeridian and holds the bbox's far-west part is not repeated.
    """
    if min_lon > max_lon or min_lat > max_lat:
        raise UsageError("bbox must be min_lon,min_lat,max_lon,max_lat with min <= max")
    rows = _rows(float(dist_km))
    r0, _ = latlon_to_rowcol(min_lat, min_lon, dist_km)
    r1, _ = latlon_to_rowcol(max_lat, min_lon, dist_km)
    r_all = np.arange(int(r0[0]), int(r1[0]) + 1, dtype=np.int64)
    ri = r_all + rows.zero_row
    k0 = _col_index(rows, ri, np.full(ri.shape, float(min_lon)), "spec")
    k1 = _col_index(rows, ri, np.full(ri.shape, float(max_lon)), "spec")
    wrapped = k0 > k1  # min_lon lies west of the row's first point: the wrapping last column
    extra_last = wrapped & (k1 < rows.ncols[ri] - 1)
    k0 = np.where(wrapped, 0, k0)
    counts = k1 - k0 + 1
    row_rep = np.repeat(r_all, counts)
    start = np.repeat(k0, counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    k = start + within
    row_rep = np.concatenate([row_rep, r_all[extra_last]])
    k = np.concatenate([k, rows.ncols[ri][extra_last] - 1])
    col = k - rows.zero_col[row_rep + rows.zero_row]
    order = np.lexsort((k, row_rep))
    row_rep, col = row_rep[order], col[order]
    return rowcol_to_cell(row_rep, col, dist_km), row_rep, col


def utm_epsg(lats: object, lons: object) -> np.ndarray:
    """EPSG code of the UTM zone of each point (326xx north, 327xx south), with the Norway
    (32V) and Svalbard (31X/33X/35X/37X) exceptions."""
    la = _as_float_array(lats, "lats")
    lo = _as_float_array(lons, "lons")
    _check_latlon(la, lo)
    zone = np.floor((lo + 180.0) / 6.0).astype(np.int64) + 1
    zone = np.minimum(zone, 60)
    norway = (la >= 56) & (la < 64) & (lo >= 3) & (lo < 12)
    zone = np.where(norway, 32, zone)
    sval = (la >= 72) & (la < 84)
    zone = np.where(sval & (lo >= 0) & (lo < 9), 31, zone)
    zone = np.where(sval & (lo >= 9) & (lo < 21), 33, zone)
    zone = np.where(sval & (lo >= 21) & (lo < 33), 35, zone)
    zone = np.where(sval & (lo >= 33) & (lo < 42), 37, zone)
    return np.where(la >= 0, 32600, 32700) + zone


def cell_of_point(lat: float, lon: float, dist: float = 10.0) -> pa.Table:
    """One row: the cell holding the point (name, grid_row_u, grid_col_r), its bounds, its
    UTM EPSG code and the grid spacing."""
    r, c = latlon_to_rowcol(lat, lon, dist)
    b = rowcol_bounds(r, c, dist)[0]
    return pa.table({
        "grid_cell": [rowcol_to_cell(r, c, dist)[0]], "grid_row_u": [int(r[0])],
        "grid_col_r": [int(c[0])], "min_lon": [b[0]], "min_lat": [b[1]], "max_lon": [b[2]],
        "max_lat": [b[3]], "utm_epsg": [int(utm_epsg(b[1], b[0])[0])],
        "dist_km": [float(dist)],
    })
