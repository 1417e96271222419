"""Heat maps of scored fragments: a regular lon/lat grid holding, per pixel, the highest
value (similarity or probability) of the fragments whose centre falls in it; NaN (nodata)
where there is none.

The pixel size defaults to the typical spacing of the fragments (about one fragment a
pixel), at most ``MAX_SIDE`` pixels a side. The grid's bounds are the envelope of the
fragments' footprints, so every scored fragment lies inside the raster. Written as a
GeoTIFF (rasterio, EPSG:4326, float32, nodata -9999, opens in QGIS), as a PNG figure with
country outlines and a colour bar (``mtquery.maps``), or as a transparent RGBA PNG for a web
map layer (``HeatMap.png_bytes``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError, UsageError

MAX_SIDE = 4096
NODATA = -9999.0
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON = 111.320
RASTER_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png",)


@dataclass(frozen=True)
class HeatMap:
    """``values`` (rows, cols) float32, row 0 the northern edge, NaN where no fragment;
    ``bounds`` (min_lon, min_lat, max_lon, max_lat) the outer edges of the grid."""

    values: np.ndarray
    bounds: tuple[float, float, float, float]
    label: str = "score"
    fragments: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @property
    def pixel_size(self) -> tuple[float, float]:
        """(degrees of longitude, degrees of latitude) per pixel."""
        h, w = self.values.shape
        return ((self.bounds[2] - self.bounds[0]) / w, (self.bounds[3] - self.bounds[1]) / h)

    def value_range(self) -> tuple[float, float]:
        ok = self.values[np.isfinite(self.values)]
        if not ok.size:
            return 0.0, 1.0
        lo, hi = float(ok.min()), float(ok.max())
        return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)

    def rgba(self, cmap: str = "magma", vmin: float | None = None,
             vmax: float | None = None) -> np.ndarray:
        """(rows, cols, 4) uint8 colours, transparent where there is no fragment."""
        import matplotlib

        lo, hi = self.value_range()
        lo = lo if vmin is None else vmin
        hi = hi if vmax is None else vmax
        scaled = np.clip((self.values - lo) / ((hi - lo) or 1.0), 0.0, 1.0)
        out = matplotlib.colormaps[cmap](np.nan_to_num(scaled), bytes=True)
        out[~np.isfinite(self.values)] = 0
        return out

    def png_bytes(self, cmap: str = "magma", vmin: float | None = None,
                  vmax: float | None = None) -> bytes:
        """The grid as a PNG image (one pixel a cell, north up, transparent nodata) for a
        map layer placed at ``bounds``."""
        import matplotlib.image

        buf = io.BytesIO()
        matplotlib.image.imsave(buf, self.rgba(cmap, vmin, vmax), format="png")
        return buf.getvalue()


@dataclass
class HeatGrid:
    """Collects (centre, value, footprint extent) of scored fragments batch by batch; the
    raster is made at the end (20 bytes a fragment)."""

    label: str = "score"
    lat: list[np.ndarray] = field(default_factory=list)
    lon: list[np.ndarray] = field(default_factory=list)
    val: list[np.ndarray] = field(default_factory=list)
    extent: list[float] = field(default_factory=lambda: [math.inf, math.inf, -math.inf,
                                                         -math.inf])

    def add(self, lat: np.ndarray, lon: np.ndarray, values: np.ndarray,
            box: tuple[float, float, float, float] | None = None) -> None:
        """Fragments' centres and values; ``box`` the envelope of their footprints (default:
        their centres)."""
        lat = np.asarray(lat, np.float64)
        lon = np.asarray(lon, np.float64)
        if not len(lat):
            return
        self.lat.append(lat)
        self.lon.append(lon)
        self.val.append(np.asarray(values, np.float32))
        if box is None:
            box = (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
        e = self.extent
        self.extent = [min(e[0], box[0]), min(e[1], box[1]), max(e[2], box[2]),
                       max(e[3], box[3])]

    def add_table(self, table: pa.Table, column: str) -> None:
        """Rows of a scored table (``centre_lat``, ``centre_lon``, ``column`` and, when there
        is one, the WKB ``geometry`` for the extent)."""
        box = footprint_box(table) if "geometry" in table.column_names else None
        self.add(table.column("centre_lat").to_numpy(zero_copy_only=False),
                 table.column("centre_lon").to_numpy(zero_copy_only=False),
                 np.asarray(table.column(column).to_numpy(zero_copy_only=False), np.float32),
                 box)

    @property
    def count(self) -> int:
        return sum(len(a) for a in self.lat)

    def raster(self, resolution: float | None = None) -> HeatMap:
        if not self.count:
            raise DataError("nothing to map: no fragment was scored", "heatmap")
        lat, lon = np.concatenate(self.lat), np.concatenate(self.lon)
        return rasterize(lat, lon, np.concatenate(self.val), tuple(self.extent),
                         resolution, self.label)


def footprint_box(table: pa.Table) -> tuple[float, float, float, float] | None:
    """Envelope of the WKB ``geometry`` column (None when it holds no geometry)."""
    import shapely

    geoms = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    geoms = geoms[~shapely.is_missing(geoms)]
    if not len(geoms):
        return None
    return tuple(float(v) for v in shapely.total_bounds(geoms))


def spacing_km(lat: np.ndarray, lon: np.ndarray, sample: int = 2000) -> float:
    """Median distance from a fragment centre to the nearest other one (seeded sample of
    positions; repeated acquisitions of one place count once)."""
    from mtquery.maps.draw import spacing_km as nearest

    pts = np.unique(np.column_stack([np.round(lat, 5), np.round(lon, 5)]), axis=0)
    if len(pts) < 2:
        return 10.0
    return float(nearest(pts[:, 0], pts[:, 1], sample=sample, q=50))


def rasterize(lat: np.ndarray, lon: np.ndarray, values: np.ndarray,
              extent: tuple[float, float, float, float], resolution: float | None = None,
              label: str = "score") -> HeatMap:
    """The max of ``values`` per pixel of a lon/lat grid covering ``extent``. ``resolution``:
    pixel size in km (default: the fragments' typical spacing), widened so the grid has at
    most MAX_SIDE pixels a side."""
    if resolution is not None and not (resolution > 0 and math.isfinite(resolution)):
        raise UsageError(f"resolution must be a positive size in km (got {resolution})",
                         "resolution")
    km = float(resolution) if resolution is not None else spacing_km(lat, lon)
    x0, y0, x1, y1 = (float(v) for v in extent)
    mid = math.radians((y0 + y1) / 2)
    dx = km / (KM_PER_DEG_LON * max(math.cos(mid), 0.01))
    dy = km / KM_PER_DEG_LAT
    side = max((x1 - x0) / dx, (y1 - y0) / dy)
    if side > MAX_SIDE - 2:  # too fine for the region: coarser pixels
        f = side / (MAX_SIDE - 2)
        dx, dy = dx * f, dy * f
    # pixels centred on the fragments (the first centre sits mid-pixel), the grid grown by
    # whole pixels until it covers every footprint
    ax, ay = float(np.min(lon)) - dx / 2, float(np.max(lat)) + dy / 2
    left = ax - math.ceil(max(ax - x0, 0.0) / dx - 1e-9) * dx
    top = ay + math.ceil(max(y1 - ay, 0.0) / dy - 1e-9) * dy
    w = max(1, math.ceil((x1 - left) / dx - 1e-9))
    h = max(1, math.ceil((top - y0) / dy - 1e-9))
    bounds = (left, top - h * dy, left + w * dx, top)
    col = np.clip(((lon - bounds[0]) / dx).astype(np.int64), 0, w - 1)
    row = np.clip(((bounds[3] - lat) / dy).astype(np.int64), 0, h - 1)
    flat = np.full(w * h, -np.inf, dtype=np.float32)
    v = np.asarray(values, np.float32)
    ok = np.isfinite(v)
    np.maximum.at(flat, (row * w + col)[ok], v[ok])
    flat[~np.isfinite(flat)] = np.nan
    return HeatMap(flat.reshape(h, w), tuple(float(b) for b in bounds), label, int(ok.sum()))


def heatmap_raster(table: pa.Table, value: str | None = None,
                   resolution: float | None = None) -> HeatMap:
    """The heat map of a scored table (``mtquery.score`` / ``mtquery.classify``): per pixel
    the highest ``value`` (default ``probability`` when present, else ``score``)."""
    value = value or ("probability" if "probability" in table.column_names else "score")
    if value not in table.column_names:
        raise UsageError(f"the table has no column {value!r} to map", "value")
    grid = HeatGrid(label=value)
    grid.add_table(table, value)
    return grid.raster(resolution)


# ---------------------------------------------------------------- files


def check_heatmap_path(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix.lower() not in RASTER_SUFFIXES + IMAGE_SUFFIXES:
        raise UsageError(f"a heat map file ends in .tif, .tiff or .png (got {p.name!r}); "
                         ".tif writes the GeoTIFF and a .png beside it", "heatmap")
    if p.is_dir():
        raise UsageError(f"{p} is a directory; give a heat map file name", "heatmap")
    return p


def heatmap_files(path: str | Path) -> list[Path]:
    """The files ``path`` asks for: a GeoTIFF and its PNG preview, or a PNG only."""
    p = check_heatmap_path(path)
    return [p, p.with_suffix(".png")] if p.suffix.lower() in RASTER_SUFFIXES else [p]


def write_geotiff(heat: HeatMap, path: str | Path) -> None:
    """Float32 GeoTIFF in EPSG:4326 (deflate), nodata -9999 where there is no fragment."""
    import rasterio
    from rasterio.transform import from_bounds

    h, w = heat.shape
    data = np.where(np.isfinite(heat.values), heat.values, NODATA).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1,
                       dtype="float32", crs="EPSG:4326", nodata=NODATA, compress="deflate",
                       transform=from_bounds(*heat.bounds, w, h)) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, heat.label)
        dst.update_tags(mtquery_value=heat.label, fragments=str(heat.fragments))


def heatmap_figure(heat: HeatMap, title: str, cmap: str = "magma"):
    """A matplotlib Figure: the grid over country outlines, aspect corrected for latitude,
    with a colour bar and a scale bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from mtquery.maps.draw import COAST, LAND, WATER, countries, scale_bar

    x0, y0, x1, y1 = heat.bounds
    lat = (y0 + y1) / 2
    aspect = 1 / max(math.cos(math.radians(lat)), 0.01)
    ratio = min(max((y1 - y0) * aspect / max(x1 - x0, 1e-9), 0.3), 3.0)
    fig, ax = plt.subplots(figsize=(7.0, max(3.0, 6.0 * ratio)), layout="constrained")
    pad_x, pad_y = 0.04 * (x1 - x0), 0.04 * (y1 - y0)
    ax.set_facecolor(WATER)
    ax.add_collection(PolyCollection(countries(), facecolors=LAND, edgecolors="none",
                                     zorder=1))
    lo, hi = heat.value_range()
    img = ax.imshow(np.ma.masked_invalid(heat.values), extent=(x0, x1, y0, y1), cmap=cmap,
                    vmin=lo, vmax=hi, interpolation="nearest", zorder=2, origin="upper")
    ax.add_collection(PolyCollection(countries(), facecolors="none", edgecolors=COAST,
                                     linewidths=0.6, zorder=3))
    ax.set_xlim(x0 - pad_x, x1 + pad_x)
    ax.set_ylim(y0 - pad_y, y1 + pad_y)
    ax.set_aspect(aspect, adjustable="box")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("longitude", fontsize=8)
    ax.set_ylabel("latitude", fontsize=8)
    scale_bar(ax, lat)
    fig.colorbar(img, ax=ax, shrink=0.8, label=heat.label)
    ax.set_title(title, fontsize=9)
    return fig


def write_heatmap(heat: HeatMap, files: dict[Path, Path], title: str) -> None:
    """Write the GeoTIFF / PNG of ``heat``: ``files`` maps each requested file to the
    temporary path it is written to (the caller renames them)."""
    for want, tmp in files.items():
        if want.suffix.lower() in RASTER_SUFFIXES:
            write_geotiff(heat, tmp)
        else:
            import matplotlib.pyplot as plt

            fig = heatmap_figure(heat, title)
            try:
                fig.savefig(tmp, format="png", dpi=130)
            finally:
                plt.close(fig)
