"""Core windows and fragmenting (docs/standard.md, "Core windows", "Fragmenting", paper
Algorithm 1), vectorised per sample.

``pixel_bbox`` order (documented, same order the reference stores):
``[row_off, col_off, row_off + f, col_off + f]`` in pixels of the source image, rows counted
from the top. Unlike the reference, which reads the first two numbers back as (col, row) when
it computes the footprint, every fragment here gets the footprint of its own pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from pyproj import Transformer

from mtquery.errors import UsageError
from mtquery.standard.grid import cell_bounds

#: Core window margins in metres (checked on 40 real Core-S2L2A samples): the image covers
#: x0 - 340 .. x0 + 10,340 and y0 - 340 .. y0 + 10,340 around the cell's SW point (x0, y0).
CORE_MARGIN_M = 340.0
CORE_SIDE_M = 10_680.0


def fragment_offsets(size: int, fragment: int, overlap: float = 0.1,
                     border_shift: bool = True) -> list[int]:
    """Offsets of Algorithm 1 along one axis, e.g. (1068, 224) -> [0, 211, 422, 633, 844]."""
    if fragment <= 0 or size <= 0:
        raise UsageError(f"image and fragment sizes must be positive (got {size}, {fragment})")
    if size < fragment:
        raise UsageError(f"image of {size} px is smaller than the {fragment} px fragment")
    if size == fragment:
        return [0]
    n = max(1, round((size - fragment) / (fragment - overlap * fragment)))
    actual_overlap = math.ceil(fragment - (size - fragment) / n)
    stride = fragment - actual_overlap
    offsets = [i * stride for i in range(n + 1)]
    if border_shift and offsets[-1] + fragment < size:
        offsets[-1] = size - fragment
    return offsets


def fragment_grid(size: int, fragment: int, overlap: float = 0.1,
                  border_shift: bool = True) -> np.ndarray:
    """(n, 4) pixel_bbox rows ``[row_off, col_off, row_off + f, col_off + f]``, row-major."""
    offs = np.asarray(fragment_offsets(size, fragment, overlap, border_shift), dtype=np.int64)
    rr, cc = np.meshgrid(offs, offs, indexing="ij")
    r, c = rr.ravel(), cc.ravel()
    return np.column_stack([r, c, r + fragment, c + fragment])


@lru_cache(maxsize=64)
def _to_wgs84(crs: str) -> Transformer:
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


@lru_cache(maxsize=64)
def _from_wgs84(crs: str) -> Transformer:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


def core_window_origin(grid_cell: str, crs: str, dist_km: float = 10.0) -> tuple[float, float]:
    """Upper-left (x, y) of a Core sample's window in ``crs``: (x0 - 340, y0 + 10,340)."""
    lon, lat = cell_bounds([grid_cell], dist_km)[0, :2]
    x0, y0 = _from_wgs84(crs).transform(lon, lat)
    return float(x0 - CORE_MARGIN_M), float(y0 - CORE_MARGIN_M + CORE_SIDE_M)


@dataclass(frozen=True)
class Footprints:
    """Per-fragment geometry of one sample (arrays of length n_fragments)."""

    pixel_bbox: np.ndarray  # (n, 4) int64
    geometry: np.ndarray  # (n,) shapely Polygons, WGS84 lon/lat
    utm_geometry: np.ndarray  # (n,) shapely Polygons in the product CRS
    centre_lat: np.ndarray
    centre_lon: np.ndarray


def fragment_footprints(pixel_bbox: np.ndarray, origin: tuple[float, float],
                        pixel_size: float, crs: str) -> Footprints:
    """Footprints of fragments given by pixel_bbox rows in an image whose upper-left corner is
    ``origin`` (metres in ``crs``) with square pixels of ``pixel_size`` metres."""
    pb = np.asarray(pixel_bbox, dtype=np.int64).reshape(-1, 4)
    ulx, uly = origin
    x_min = ulx + pb[:, 1] * pixel_size
    x_max = ulx + pb[:, 3] * pixel_size
    y_max = uly - pb[:, 0] * pixel_size
    y_min = uly - pb[:, 2] * pixel_size
    xs = np.column_stack([x_min, x_max, x_max, x_min, x_min])
    ys = np.column_stack([y_min, y_min, y_max, y_max, y_min])
    utm = shapely.polygons(np.stack([xs, ys], axis=-1))
    lon, lat = _to_wgs84(crs).transform(xs.ravel(), ys.ravel())
    coords = np.stack([np.asarray(lon).reshape(xs.shape), np.asarray(lat).reshape(xs.shape)], -1)
    geom = shapely.polygons(coords)
    cen = shapely.centroid(geom)
    return Footprints(pixel_bbox=pb, geometry=geom, utm_geometry=utm,
                      centre_lat=shapely.get_y(cen), centre_lon=shapely.get_x(cen))
