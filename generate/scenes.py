"""Sentinel scenes as generator input: per-band GeoTIFF/COG files or a STAC item.

The band of a file comes from its name (``B04``, ``B8A``, ``vv``...; in a STAC item from
``eo:bands`` or the asset key). Every grid cell whose Core window (docs/standard.md, "Core
windows") lies fully inside the scene becomes one sample, resampled (nearest) onto the window's
grid at the band's nominal resolution (10/20/60 m; S1 10 m). Remote band files are read by GDAL
(``/vsicurl/``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtquery.errors import DataError, UsageError
from mtquery.generate.remote import open_remote
from mtquery.generate.sample import CORE_PX_10M, NOMINAL_RES, Sample
from mtquery.io.datasets import is_remote

_BAND_RE = re.compile(r"(?<![A-Za-z0-9])(B0[1-9]|B1[0-2]|B8A|VV|VH)(?![A-Za-z0-9])",
                      re.IGNORECASE)
_STAC_COMMON = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04",
                "rededge1": "B05", "rededge2": "B06", "rededge3": "B07", "nir": "B08",
                "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
                "swir22": "B12", "vv": "vv", "vh": "vh"}


def band_of(name: str) -> str | None:
    m = _BAND_RE.search(Path(name).stem)
    if not m:
        return None
    b = m.group(1)
    return b.lower() if b.lower() in ("vv", "vh") else b.upper()


@dataclass
class SceneInput:
    """A scene: band name -> file (local path or URL readable by GDAL)."""

    path: str
    files: dict[str, str]
    product_id: str
    timestamp: str
    kind: str = "scene"
    dist_km: float = 10.0

    def __post_init__(self):
        import rasterio

        from mtquery.generate.fragment import core_window_origin
        from mtquery.standard.grid import cells_in_bbox

        if not self.files:
            raise DataError(f"{self.path}: no band files found (expected names with B01..B12, "
                            "B8A, vv or vh)")
        bounds = None
        try:
            for f in self.files.values():
                with rasterio.open(_gdal_path(f)) as src:
                    if src.crs is None:
                        raise DataError(f"{f} has no CRS")
                    crs = src.crs.to_string()
                    b = src.bounds
                    bb = (b.left, b.bottom, b.right, b.top)
                    if bounds is None:
                        bounds, self.crs = bb, crs
                    else:
                        if crs != self.crs:
                            raise DataError(f"{f}: CRS {crs} differs from {self.crs}")
                        bounds = (max(bounds[0], bb[0]), max(bounds[1], bb[1]),
                                  min(bounds[2], bb[2]), min(bounds[3], bb[3]))
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"cannot read scene {self.path}: {exc}") from None
        self.bounds = bounds
        from pyproj import Transformer

        t = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        xs = np.linspace(bounds[0], bounds[2], 11)
        ys = np.linspace(bounds[1], bounds[3], 11)
        gx, gy = np.meshgrid(xs, ys)
        lon, lat = t.transform(gx.ravel(), gy.ravel())
        names, rows, cols = cells_in_bbox(float(np.min(lon)), float(np.min(lat)),
                                          float(np.max(lon)), float(np.max(lat)), self.dist_km)
        side = 10_680.0
        keep = []
        for n, r, c in zip(names, rows, cols, strict=True):
            ulx, uly = core_window_origin(str(n), self.crs, self.dist_km)
            if (ulx >= bounds[0] and ulx + side <= bounds[2] and uly <= bounds[3]
                    and uly - side >= bounds[1]):
                keep.append((str(n), int(r), int(c), (ulx, uly)))
        self.cells = keep

    @property
    def bands(self) -> set[str]:
        return set(self.files)

    def __len__(self) -> int:
        return len(self.cells)

    def describe(self) -> dict:
        return {"path": self.path, "kind": "scene", "files": dict(sorted(self.files.items())),
                "crs": self.crs, "product_id": self.product_id, "timestamp": self.timestamp,
                "samples": len(self.cells)}

    def samples(self, start: int, stop: int, bands: tuple[str, ...]
                ) -> Iterator[tuple[int, Sample | None, str | None]]:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.transform import Affine
        from rasterio.warp import reproject

        srcs = {}
        try:
            for b in bands:
                srcs[b] = rasterio.open(_gdal_path(self.files[b]))
            for i in range(start, stop):
                name, r, c, (ulx, uly) = self.cells[i]
                s = Sample(name, r, c, self.product_id, self.timestamp, crs=self.crs,
                           origin=(ulx, uly), ref=f"{self.path}#{name}")
                try:
                    finest = None
                    for b in bands:
                        res = NOMINAL_RES[b]
                        n = int(round(CORE_PX_10M * 10 / res))
                        dst = np.zeros((n, n), dtype=srcs[b].dtypes[0])
                        reproject(rasterio.band(srcs[b], 1), dst,
                                  dst_transform=Affine(res, 0, ulx, 0, -res, uly),
                                  dst_crs=self.crs, resampling=Resampling.nearest)
                        s.bands[b] = dst
                        finest = res if finest is None else min(finest, res)
                    s.pixel_size = float(finest)
                except Exception as exc:
                    yield i, s, f"cannot read window ({type(exc).__name__}: {exc})"
                    continue
                yield i, s, None
        finally:
            for src in srcs.values():
                src.close()


def _gdal_path(f: str) -> str:
    if f.startswith(("http://", "https://")):
        return "/vsicurl/" + f
    return f


def scene_from_files(path: str, files: list[str], product_id: str | None,
                      timestamp: str | None) -> SceneInput:
    bands: dict[str, str] = {}
    for f in files:
        b = band_of(f)
        if b is None:
            continue
        if b in bands:
            raise UsageError(f"band {b} given twice ({bands[b]} and {f})")
        bands[b] = f
    pid = product_id or Path(path).name
    return SceneInput(path, bands, pid, timestamp or "")


def scene_from_stac(path: str, product_id: str | None, timestamp: str | None) -> SceneInput:
    try:
        if is_remote(path):
            with open_remote(path) as f:
                item = json.loads(f.read())
        else:
            item = json.loads(Path(path).read_text())
    except Exception as exc:
        raise DataError(f"cannot read STAC item {path}: {exc}") from None
    if item.get("type") != "Feature" or "assets" not in item:
        raise DataError(f"{path} is not a STAC item (no Feature with assets)")
    props = item.get("properties", {})
    base = Path(path).parent
    files: dict[str, str] = {}
    for key, asset in item["assets"].items():
        band = None
        for eb in asset.get("eo:bands", []) or []:
            nm = str(eb.get("name", ""))
            band = band_of(nm) or _STAC_COMMON.get(str(eb.get("common_name", "")))
            if band:
                break
        band = band or _STAC_COMMON.get(key) or band_of(key)
        href = asset.get("href", "")
        if not band or not href or not href.lower().split("?")[0].endswith((".tif", ".tiff")):
            continue
        local = base / Path(href.split("?")[0]).name
        if not is_remote(path) and local.is_file():
            href = str(local)  # a mirrored item: files beside the JSON
        elif not is_remote(href) and not Path(href).is_absolute():
            href = str(base / href)
        files.setdefault(band, href)
    pid = product_id or str(props.get("s2:product_uri") or item.get("id") or Path(path).stem)
    pid = pid[:-5] if pid.endswith(".SAFE") else pid
    ts = timestamp or str(props.get("datetime") or "")
    return SceneInput(path, files, pid, ts)
