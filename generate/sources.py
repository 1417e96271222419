"""Inputs of the generator: Major TOM Core parquet files and Sentinel scenes.

Both yield :class:`Sample` objects: one Core window (bands at their native resolution, the
upper-left origin and CRS of the window). ``stack`` upsamples coarser bands to the finest one
with nearest neighbour (spec §3).

* Core parquet (``images/part_*.parquet``; one sample per row group, one GeoTIFF-bytes column
  per band), local or remote (``https://`` with HTTP range requests, ``hf://datasets/...``),
  read one row group at a time.
* A scene as per-band GeoTIFF/COG files (band name from the file name: ``B04``, ``B8A``,
  ``vv``...), a directory of such files, or a STAC item JSON. Every grid cell whose Core window
  (spec §3) lies fully inside the scene becomes one sample, resampled (nearest) onto the
  window's grid at the band's nominal resolution (10/20/60 m; S1 10 m).
"""

from __future__ import annotations

import io
import json
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtquery.errors import DataError, UsageError

META_COLUMNS = ("product_id", "grid_cell", "grid_row_u", "grid_col_r", "timestamp")
NOMINAL_RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
               "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
               "vv": 10, "vh": 10}
CORE_PX_10M = 1068
_BAND_RE = re.compile(r"(?<![A-Za-z0-9])(B0[1-9]|B1[0-2]|B8A|VV|VH)(?![A-Za-z0-9])",
                      re.IGNORECASE)
_STAC_COMMON = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04",
                "rededge1": "B05", "rededge2": "B06", "rededge3": "B07", "nir": "B08",
                "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
                "swir22": "B12", "vv": "vv", "vh": "vh"}


class SampleError(Exception):
    """One sample cannot be used (corrupt bytes, missing band); the run goes on."""


@dataclass
class Sample:
    grid_cell: str
    grid_row_u: int
    grid_col_r: int
    product_id: str
    timestamp: str
    crs: str = ""
    origin: tuple[float, float] = (0.0, 0.0)  # upper-left (x, y) in crs
    pixel_size: float = 10.0  # of the finest band
    bands: dict[str, np.ndarray] = field(default_factory=dict)
    ref: str = ""  # where it came from (file#row_group)

    def stack(self, names: tuple[str, ...]) -> np.ndarray:
        """(bands, H, W) with coarser bands upsampled (nearest) to the finest one."""
        missing = [b for b in names if b not in self.bands]
        if missing:
            raise SampleError(f"missing band(s) {','.join(missing)}")
        arrs = [self.bands[b] for b in names]
        size = max(a.shape[0] for a in arrs)
        out = np.empty((len(arrs), size, size), dtype=np.float32)
        for i, a in enumerate(arrs):
            if a.shape[0] != a.shape[1]:
                raise SampleError(f"band {names[i]} is not square ({a.shape})")
            if a.shape[0] == size:
                out[i] = a
            else:
                idx = (np.arange(size) * a.shape[0]) // size
                out[i] = a[np.ix_(idx, idx)]
        return out


# ----------------------------------------------------------------------------- remote files


def _http_url(url: str) -> str:
    if url.startswith("hf://"):
        rest = url[len("hf://"):]
        parts = rest.split("/")
        if parts[0] not in ("datasets", "models", "spaces") or len(parts) < 4:
            raise UsageError(f"cannot read {url}: expected hf://datasets/<org>/<name>/<path>")
        kind, org, name, path = parts[0], parts[1], parts[2], "/".join(parts[3:])
        rev = "main"
        if "@" in name:
            name, rev = name.split("@", 1)
        prefix = "" if kind == "models" else f"{kind}/"
        return f"https://huggingface.co/{prefix}{org}/{name}/resolve/{rev}/{path}"
    return url


class HTTPRangeFile(io.RawIOBase):
    """Read-only seekable file over HTTP range requests (what pyarrow needs for a footer +
    one row group at a time)."""

    def __init__(self, url: str, block: int = 1 << 20, timeout: float = 60.0):
        super().__init__()
        self.url, self.block, self.timeout = _http_url(url), block, timeout
        self.pos = 0
        self._cache: tuple[int, bytes] = (0, b"")
        self.size = self._size()

    def _get(self, start: int, end: int) -> bytes:  # inclusive end
        req = urllib.request.Request(self.url, headers={"Range": f"bytes={start}-{end}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                data = r.read()
                if r.status == 200:  # server ignored the range
                    data = data[start:end + 1]
                return data
        except Exception as exc:
            raise DataError(f"cannot read {self.url}: {exc}") from None

    def _size(self) -> int:
        req = urllib.request.Request(self.url, headers={"Range": "bytes=0-0"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                cr = r.headers.get("Content-Range")
                if cr and "/" in cr:
                    return int(cr.rsplit("/", 1)[1])
                length = r.headers.get("Content-Length")
                if r.status == 200 and length:
                    return int(length)
        except Exception as exc:
            raise DataError(f"cannot read {self.url}: {exc}") from None
        raise DataError(f"cannot read {self.url}: server gives no size")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = max(0, min(n, self.size - self.pos))
        if n == 0:
            return b""
        c0, cdata = self._cache
        if not (c0 <= self.pos and self.pos + n <= c0 + len(cdata)):
            end = min(self.size, self.pos + max(n, self.block)) - 1
            self._cache = (self.pos, self._get(self.pos, end))
            c0, cdata = self._cache
        out = cdata[self.pos - c0:self.pos - c0 + n]
        self.pos += len(out)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def is_remote(path: str) -> bool:
    return path.startswith(("http://", "https://", "hf://"))


# ----------------------------------------------------------------------------- Core parquet


def decode_geotiff(data: bytes) -> tuple[np.ndarray, tuple[float, float], float, str]:
    """(array, (ulx, uly), pixel size, crs) of single-band GeoTIFF bytes."""
    from rasterio.io import MemoryFile

    if not data:
        raise SampleError("empty band bytes")
    try:
        with MemoryFile(data) as mf, mf.open() as src:
            arr = src.read(1)
            t = src.transform
            crs = src.crs.to_string() if src.crs else ""
    except SampleError:
        raise
    except Exception as exc:
        raise SampleError(f"corrupt GeoTIFF bytes ({type(exc).__name__})") from None
    return arr, (t.c, t.f), float(abs(t.a)), crs


@dataclass
class CoreInput:
    """One Core image parquet file; samples are (row group, row) pairs in file order."""

    path: str
    kind: str = "core"

    def __post_init__(self):
        import pyarrow.parquet as pq

        try:
            src = HTTPRangeFile(self.path) if is_remote(self.path) else self.path
            self._pf = pq.ParquetFile(src)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"cannot read {self.path} as parquet: {exc}") from None
        md = self._pf.metadata
        self.columns = set(self._pf.schema_arrow.names)
        missing = [c for c in META_COLUMNS if c not in self.columns]
        if missing:
            raise DataError(f"{self.path} is not a Major TOM Core image parquet (no "
                            f"{', '.join(missing)} column)")
        self.index = [(rg, r) for rg in range(md.num_row_groups)
                      for r in range(md.row_group(rg).num_rows)]

    @property
    def bands(self) -> set[str]:
        return {c for c in self.columns if c in NOMINAL_RES}

    def __len__(self) -> int:
        return len(self.index)

    def describe(self) -> dict:
        return {"path": self.path, "kind": "core-parquet",
                "row_groups": self._pf.metadata.num_row_groups, "samples": len(self.index)}

    def samples(self, start: int, stop: int, bands: tuple[str, ...]
                ) -> Iterator[tuple[int, Sample | None, str | None]]:
        """(index, sample or None, error) for samples start..stop-1, one row group read at a
        time."""
        cols = list(META_COLUMNS) + [b for b in bands if b in self.columns]
        cur_rg, table = -1, None
        for i in range(start, stop):
            rg, row = self.index[i]
            if rg != cur_rg:
                try:
                    table = self._pf.read_row_group(rg, columns=cols)
                except Exception as exc:
                    table = None
                    err = f"unreadable row group {rg} ({type(exc).__name__})"
                cur_rg = rg
            if table is None:
                yield i, Sample("?", 0, 0, "?", "", ref=f"{self.path}#{rg}"), err
                continue
            meta = {c: table.column(c)[row].as_py() for c in META_COLUMNS}
            s = Sample(str(meta["grid_cell"]), int(meta["grid_row_u"] or 0),
                       int(meta["grid_col_r"] or 0), str(meta["product_id"]),
                       str(meta["timestamp"]), ref=f"{self.path}#{rg}")
            try:
                finest = None
                for b in bands:
                    if b not in table.column_names or table.column(b)[row].as_py() is None:
                        raise SampleError(f"missing band {b}")
                    arr, origin, px, crs = decode_geotiff(table.column(b)[row].as_py())
                    s.bands[b] = arr
                    if finest is None or px < finest[1]:
                        finest = (origin, px, crs)
                s.origin, s.pixel_size, s.crs = finest
                if not s.crs:
                    raise SampleError("GeoTIFF without CRS")
            except SampleError as exc:
                yield i, s, str(exc)
                continue
            yield i, s, None


# ----------------------------------------------------------------------------- scenes


def _band_of(name: str) -> str | None:
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
        from mtquery.grid import cells_in_bbox

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


def _scene_from_files(path: str, files: list[str], product_id: str | None,
                      timestamp: str | None) -> SceneInput:
    bands: dict[str, str] = {}
    for f in files:
        b = _band_of(f)
        if b is None:
            continue
        if b in bands:
            raise UsageError(f"band {b} given twice ({bands[b]} and {f})")
        bands[b] = f
    pid = product_id or Path(path).name
    return SceneInput(path, bands, pid, timestamp or "")


def _scene_from_stac(path: str, product_id: str | None, timestamp: str | None) -> SceneInput:
    try:
        if is_remote(path):
            with urllib.request.urlopen(_http_url(path), timeout=60) as r:
                item = json.loads(r.read())
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
            band = _band_of(nm) or _STAC_COMMON.get(str(eb.get("common_name", "")))
            if band:
                break
        band = band or _STAC_COMMON.get(key) or _band_of(key)
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


def open_inputs(paths: list[str], product_id: str | None = None,
                timestamp: str | None = None) -> list[CoreInput | SceneInput]:
    """Classify each input: Core parquet (file, directory with images/*.parquet, URL), a STAC
    item JSON, or a scene (directory of band files, or band files given together)."""
    if not paths:
        raise UsageError("no --input given")
    out: list[CoreInput | SceneInput] = []
    loose: list[str] = []
    for p in paths:
        low = p.lower().split("?")[0]
        if low.endswith(".parquet"):
            if not is_remote(p) and not Path(p).is_file():
                raise DataError(f"input {p} does not exist")
            out.append(CoreInput(p))
        elif low.endswith(".json"):
            out.append(_scene_from_stac(p, product_id, timestamp))
        elif is_remote(p):
            raise UsageError(f"remote input {p} must be a .parquet file or a STAC .json item")
        elif Path(p).is_dir():
            d = Path(p)
            parts = sorted((d / "images").glob("*.parquet")) or sorted(
                q for q in d.glob("*.parquet") if q.name != "metadata.parquet")
            if parts:
                out.extend(CoreInput(str(q)) for q in parts)
                continue
            stac = sorted(d.glob("*.json"))
            tifs = sorted(str(q) for q in d.iterdir() if q.suffix.lower() in
                          (".tif", ".tiff", ".jp2") and _band_of(q.name))
            if stac:  # a mirrored STAC item: its metadata gives product id and time
                out.append(_scene_from_stac(str(stac[0]), product_id, timestamp))
            elif tifs:
                out.append(_scene_from_files(p, tifs, product_id, timestamp))
            else:
                raise DataError(f"{p}: no Core parquet, band files or STAC item in it")
        elif Path(p).is_file():
            loose.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    if loose:
        parent = str(Path(loose[0]).parent)
        out.append(_scene_from_files(parent, loose, product_id, timestamp))
    return out
