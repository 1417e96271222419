"""Shared rows for the foreign-shape fixtures (``tests/data/<shape>/data.py``): seeded places
on the real Major TOM 10 km grid and clustered vectors, so each shape holds the same kind of
content and only its layout differs.

Places are distinct grid cells over land (a few farmland / plain regions, so every cell is on
land), several acquisitions for some of them (2018-2024); a place's rows are one or two of the
``frag x frag`` footprints of its cell (``frag=1``: the whole ~10 km cell), the same at every
acquisition. Vectors are unit vectors around ``CLUSTERS`` seeded centres: a cluster per place
(spatially coherent: the region's, with a seeded minority of other clusters), a per-place
offset and per-row noise, so the nearest neighbours of a row are the other rows of its place,
then of its cluster. In a seeded share of the places seen more than once the land cover
CHANGES: the last acquisition is drawn from another cluster (``changed`` marks those rows), so
change-over-time has something to find.

Used by the fixture scripts, not by mtquery: it writes nothing itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from mtquery.standard.grid import latlon_to_rowcol, rowcol_bounds, rowcol_to_cell

#: (min_lon, min_lat, max_lon, max_lat) land regions (farmland and plains, no coast)
REGIONS = (
    (8.5, 44.7, 12.0, 45.5),       # Po valley, Italy
    (-95.0, 41.0, -91.5, 43.0),    # Iowa, USA
    (-62.5, -35.0, -59.5, -33.0),  # Pampas, Argentina
    (80.0, 25.0, 84.0, 27.0),      # Ganges plain, India
    (116.8, -32.5, 118.5, -31.0),  # Wheatbelt, Australia
    (13.0, 47.5, 17.0, 51.5),      # Central Europe (all inside UTM zone 33N)
)
CLUSTERS = 6
PLACE_SPREAD = 0.35   # norm of a place's offset from its cluster centre
ROW_NOISE = 0.2       # norm of a row's noise around its place
CHANGE_SHARE = 0.4   # share of multi-acquisition places whose last acquisition changes


@dataclass(frozen=True)
class Rows:
    """Per-row arrays (all of length ``rows``)."""

    place: np.ndarray      # int: index of the place (grid cell)
    cell: np.ndarray       # str: Major TOM cell name, e.g. "451U_946L"
    time: np.ndarray       # datetime64[s]: acquisition time
    bounds: np.ndarray     # (n, 4) float: the footprint's min_lon, min_lat, max_lon, max_lat
    cluster: np.ndarray    # int: the cluster the row's vector was drawn from
    changed: np.ndarray    # bool: drawn from another cluster than the place's first acquisition

    @property
    def lon(self) -> np.ndarray:
        return (self.bounds[:, 0] + self.bounds[:, 2]) / 2

    @property
    def lat(self) -> np.ndarray:
        return (self.bounds[:, 1] + self.bounds[:, 3]) / 2

    def polygons(self) -> np.ndarray:
        """The footprints as shapely polygons (lon/lat)."""
        b = self.bounds
        return shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])

    def points(self) -> np.ndarray:
        """The footprints' centres as shapely points (lon/lat)."""
        return shapely.points(self.lon, self.lat)


def _cells(n: int, regions: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """``n`` distinct cells (signed row, col) and the region index of each."""
    reg = np.asarray(regions, dtype=np.float64)
    pick = rng.integers(0, len(reg), size=n * 3)
    lon = rng.uniform(reg[pick, 0], reg[pick, 2])
    lat = rng.uniform(reg[pick, 1], reg[pick, 3])
    r, c = latlon_to_rowcol(lat, lon)
    _, first = np.unique(np.stack([r, c], 1), axis=0, return_index=True)
    keep = np.sort(first)[:n]  # first occurrences, in draw order (seeded)
    return r[keep], c[keep], pick[keep]


def rows(n: int, seed: int = 0, frag: int = 1, max_times: int = 4,
         regions: tuple = REGIONS, per_place: int = 2) -> Rows:
    """``n`` rows: places with 1..``max_times`` acquisitions, each acquisition the same
    ``per_place`` (seeded) of the ``frag x frag`` footprints of the place's cell."""
    if n < 0:
        raise ValueError("rows must be >= 0")
    rng = np.random.default_rng(seed)
    per_acq = min(frag * frag, per_place)
    n_acq = max(1, -(-n // per_acq))
    n_places = max(1, int(np.ceil(n_acq / (1 + (max_times - 1) / 2))))
    r, c, region = _cells(n_places, regions, rng)
    n_places = len(r)
    times = rng.integers(1, max_times + 1, size=n_places)
    place_of_acq = np.repeat(np.arange(n_places), times)
    if len(place_of_acq) < n_acq:  # top up: more acquisitions of seeded places
        extra = rng.integers(0, n_places, n_acq - len(place_of_acq))
        place_of_acq = np.sort(np.concatenate([place_of_acq, extra]), kind="stable")
    place_of_acq = place_of_acq[:n_acq]
    # acquisition times: distinct days 2018-2024, increasing within a place, mid-morning UTC
    day = rng.choice(7 * 365, size=n_acq, replace=False)
    secs = 9 * 3600 + rng.integers(0, 4 * 3600, size=n_acq)
    t = (np.datetime64("2018-01-01T00:00:00", "s") + day.astype("timedelta64[D]")
         + secs.astype("timedelta64[s]"))
    order = np.lexsort((t, place_of_acq))
    place_of_acq, t = place_of_acq[order], t[order]
    # clusters: the region's, a seeded minority of others; some places change at the end
    base = np.where(rng.random(n_places) < 0.25, rng.integers(0, CLUSTERS, n_places),
                    region % CLUSTERS)
    count = np.bincount(place_of_acq, minlength=n_places)
    change = (count > 1) & (rng.random(n_places) < CHANGE_SHARE)
    if not change.any() and (count > 1).any():  # always something to find
        change[int(np.argmax(count > 1))] = True
    new = (base + rng.integers(1, CLUSTERS, n_places)) % CLUSTERS
    last = np.r_[place_of_acq[1:] != place_of_acq[:-1], True]
    changed_acq = last & change[place_of_acq]
    cluster_acq = np.where(changed_acq, new[place_of_acq], base[place_of_acq])
    # rows: every fragment of every acquisition
    frags = np.argsort(rng.random((n_places, frag * frag)), axis=1)[:, :per_acq]
    a = np.repeat(np.arange(n_acq), per_acq)[:n]
    p = place_of_acq[a]
    f = frags[p, np.tile(np.arange(per_acq), n_acq)[:n]]
    cb = rowcol_bounds(r[p], c[p])
    w = (cb[:, 2] - cb[:, 0]) / frag
    h = (cb[:, 3] - cb[:, 1]) / frag
    x0 = cb[:, 0] + (f % frag) * w
    y1 = cb[:, 3] - (f // frag) * h
    bounds = np.column_stack([x0, y1 - h, x0 + w, y1])
    return Rows(place=p, cell=np.asarray(rowcol_to_cell(r, c), dtype=object)[p],
                time=t[a], bounds=bounds, cluster=cluster_acq[a], changed=changed_acq[a])


def vectors(rows: Rows, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float64 unit vectors: cluster centre + place offset + row noise."""
    rng = np.random.default_rng([seed, dim, 1])
    centres = rng.normal(size=(CLUSTERS, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_places = int(rows.place.max()) + 1 if len(rows.place) else 0
    offset = rng.normal(size=(n_places, dim)) * (PLACE_SPREAD / np.sqrt(dim))
    noise = rng.normal(size=(len(rows.place), dim)) * (ROW_NOISE / np.sqrt(dim))
    x = centres[rows.cluster] + offset[rows.place] + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bbox(bounds: np.ndarray) -> list[float]:
    """The overall [min_x, min_y, max_x, max_y] of (n, 4) bounds (GeoParquet ``bbox``)."""
    if not len(bounds):
        return []
    return [float(bounds[:, 0].min()), float(bounds[:, 1].min()),
            float(bounds[:, 2].max()), float(bounds[:, 3].max())]


def geo_metadata(geometry_types: list[str], bounds: np.ndarray, crs: object = "absent",
                 covering: dict | None = None) -> dict:
    """A GeoParquet 1.1 ``geo`` metadata dict for one WKB ``geometry`` column; ``crs``
    ``"absent"`` leaves the key out (OGC:CRS84 by the spec), ``None`` writes null
    (unknown), else a PROJJSON dict."""
    col: dict = {"encoding": "WKB", "geometry_types": geometry_types}
    if crs != "absent":
        col["crs"] = crs
    box = bbox(bounds)
    if box:
        col["bbox"] = box
    if covering:
        col["covering"] = covering
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}}


def write_file(table: pa.Table, out: str | Path, name: str, **options) -> Path:
    """``table`` written to ``out/name`` (folders made), ``options`` to pq.write_table."""
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **options)
    return path


def cli(write: Callable[..., Path], doc: str, **flags: str) -> None:
    """A fixture script's command line: ``OUT [--rows N] [--seed S]`` and boolean ``flags``
    (``--name`` -> help), printing what ``write`` returns."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    for flag, text in flags.items():
        ap.add_argument(flag, action="store_true", help=text)
    a = vars(ap.parse_args())
    print(write(a.pop("output"), a.pop("rows"), a.pop("seed"), **a))
