"""Seeded SYNTHETIC embedding datasets in the standard schema, for benchmarks and tests.

Geometry is realistic in shape and place: real Major TOM Core cells (10 km grid) drawn in a
few land regions, each observed 1-4 times (2017-2024), each acquisition cut into a 5 x 5
grid of fragments inside the cell (as lon/lat boxes, not the reprojected UTM windows: fast at
millions of rows). Vectors are CLUSTERED unit vectors, never uniform noise: a land-cover type
(spatially coherent: a coarse-grid hash of the location), a sub-type, a per-cell offset and
per-fragment noise, all in a low-rank latent space projected to ``dim``, plus a little
isotropic noise. ``unique_id`` is a SHA-256 of the row's identity and seed (not the standard's
recipe, which hashes the printed vector and is too slow for millions of synthetic rows).

Rows are written in random order (the layout a naive writer produces); ``mtquery optimize``
turns that into the pruned layout.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from mtquery.io.fsio import atomic_path
from mtquery.standard.grid import latlon_to_rowcol, rowcol_bounds, rowcol_to_cell
from mtquery.standard.schema import arrow_schema, embedding_array, with_geo_metadata

#: (min_lon, min_lat, max_lon, max_lat) land regions the synthetic cells are drawn from
REGIONS = (
    (-124.0, 32.0, -70.0, 49.0),   # North America
    (-10.0, 36.0, 30.0, 60.0),     # Europe
    (-70.0, -35.0, -40.0, -5.0),   # South America
    (5.0, -30.0, 35.0, 10.0),      # Africa
    (70.0, 10.0, 120.0, 45.0),     # Asia
    (115.0, -38.0, 150.0, -20.0),  # Australia
)
FRAG = 5  # fragments per side of a cell


@dataclass(frozen=True)
class SynthSpec:
    rows: int
    dim: int = 768
    seed: int = 0
    types: int = 48          # land-cover types
    subtypes: int = 24       # sub-types per type
    latent: int = 96         # rank of the structured part
    frag_noise: float = 1.5   # per-fragment latent noise (type centres have scale 1)
    iso_noise: float = 0.08   # isotropic noise per dimension (x sqrt(dim) in norm)
    #: "lowrank": the structured model above; "isotropic": ``types`` unit centres in the full
    #: space plus isotropic within-cluster noise of norm ``spread`` (neighbours differ from
    #: the rest by small margins, as concentrated real embeddings do: the hard case for
    #: quantised ANN codes)
    distribution: str = "lowrank"
    spread: float = 1.0

    def __post_init__(self) -> None:
        if self.latent > self.dim:  # the structured part cannot have a higher rank than dim
            object.__setattr__(self, "latent", self.dim)


def _cells(n_acq: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Signed (row, col) of distinct cells, several acquisitions each; returns per-acquisition
    arrays."""
    n_cells = max(1, int(np.ceil(n_acq / 2.5)))
    regions = np.asarray(REGIONS)
    area = (regions[:, 2] - regions[:, 0]) * (regions[:, 3] - regions[:, 1])
    pick = rng.choice(len(regions), size=n_cells * 2, p=area / area.sum())
    lon = rng.uniform(regions[pick, 0], regions[pick, 2])
    lat = rng.uniform(regions[pick, 1], regions[pick, 3])
    r, c = latlon_to_rowcol(lat, lon)
    key = np.unique(np.stack([r, c], 1), axis=0)
    key = key[rng.permutation(len(key))[:n_cells]]
    times = rng.integers(1, 5, size=len(key))  # 1-4 acquisitions per cell
    rep = np.repeat(np.arange(len(key)), times)[:n_acq]
    if len(rep) < n_acq:  # top up with more acquisitions of random cells
        rep = np.concatenate([rep, rng.integers(0, len(key), n_acq - len(rep))])
    return key[rep, 0], key[rep, 1]


def metadata(spec: SynthSpec) -> pa.Table:
    """Every column but the embedding, in generation order (acquisition-major)."""
    rng = np.random.default_rng(spec.seed)
    n_acq = -(-spec.rows // (FRAG * FRAG))
    r, c = _cells(n_acq, rng)
    bounds = rowcol_bounds(r, c)
    names = rowcol_to_cell(r, c)
    t0 = np.datetime64("2017-01-01T00:00:00")
    secs = rng.integers(0, 8 * 365 * 86400, size=n_acq)
    ts = (t0 + secs.astype("timedelta64[s]")).astype("datetime64[s]")
    ts_str = np.char.replace(np.char.replace(ts.astype(str), "-", ""), ":", "")
    tile = rng.integers(10, 60, size=n_acq)
    product = np.char.add(np.char.add(np.char.add("S2A_MSIL2A_", ts_str),
                                      "_N0500_R000_T"), tile.astype(str))
    fi = np.arange(FRAG * FRAG)
    a = np.repeat(np.arange(n_acq), FRAG * FRAG)[: spec.rows]
    f = np.tile(fi, n_acq)[: spec.rows]
    fr, fc = f // FRAG, f % FRAG
    b = bounds[a]
    w = (b[:, 2] - b[:, 0]) / FRAG
    h = (b[:, 3] - b[:, 1]) / FRAG
    x0 = b[:, 0] + fc * w
    y1 = b[:, 3] - fr * h
    geoms = shapely.box(x0, y1 - h, x0 + w, y1)
    px = np.array([0, 211, 422, 633, 844])
    pixel = np.stack([px[fr], px[fc], px[fr] + 224, px[fc] + 224], 1)
    ids = [hashlib.sha256(f"{spec.seed}_{names[i]}_{ts_str[i]}_{j}".encode()).hexdigest()
           for i, j in zip(a, f, strict=True)]
    zone = np.floor((np.clip((x0 + w / 2), -180, 179.999) + 180) / 6).astype(int) + 1
    crs = np.char.add(np.where(y1 - h / 2 >= 0, "EPSG:326", "EPSG:327"),
                      np.char.zfill(zone.astype(str), 2))
    return pa.table({
        "unique_id": pa.array(ids, pa.string()),
        "timestamp": pa.array(ts_str[a], pa.string()),
        "product_id": pa.array(product[a], pa.string()),
        "grid_cell": pa.array(names[a], pa.string()),
        "grid_row_u": pa.array(r[a].astype(np.int16)),
        "grid_col_r": pa.array(c[a].astype(np.int16)),
        "geometry": pa.array(shapely.to_wkb(geoms), pa.binary()),
        "centre_lat": pa.array((y1 - h / 2).astype(np.float32)),
        "centre_lon": pa.array((x0 + w / 2).astype(np.float32)),
        "utm_footprint": pa.array(["" for _ in range(spec.rows)], pa.string()),
        "utm_crs": pa.array(crs[a], pa.string()),
        "pixel_bbox": pa.array(list(pixel), pa.list_(pa.int64())),
    })


class VectorModel:
    """The seeded generative model of the vectors (see the module docstring)."""

    def __init__(self, spec: SynthSpec) -> None:
        rng = np.random.default_rng(spec.seed + 1)
        self.spec = spec
        q, _ = np.linalg.qr(rng.normal(size=(spec.dim, spec.latent)))
        self.proj = q.T.astype(np.float32)  # (latent, dim) orthonormal rows
        self.type_c = rng.normal(size=(spec.types, spec.latent)).astype(np.float32)
        self.sub_c = 0.6 * rng.normal(size=(spec.types, spec.subtypes, spec.latent)).astype(
            np.float32)

    def vectors(self, table: pa.Table, rng: np.random.Generator) -> np.ndarray:
        s = self.spec
        if s.distribution == "isotropic":
            return self._isotropic(len(table), rng)
        lat = table.column("centre_lat").to_numpy().astype(np.float64)
        lon = table.column("centre_lon").to_numpy().astype(np.float64)
        cell = table.column("grid_row_u").to_numpy().astype(np.int64) * 100_003 + \
            table.column("grid_col_r").to_numpy().astype(np.int64)
        # land-cover type: spatially coherent (2-degree blocks), with 30 % local variation
        block = (np.floor(lat / 2.0).astype(np.int64) * 7919 + np.floor(lon / 2.0).astype(
            np.int64) * 104729 + s.seed) % s.types
        t = np.where(rng.random(len(lat)) < 0.3, rng.integers(0, s.types, len(lat)), block)
        sub = rng.integers(0, s.subtypes, len(lat))
        cell_rng = (cell * 2654435761) % (2**32)
        cell_off = np.stack([np.sin(cell_rng * (i + 1) * 1e-3) for i in range(8)], 1)
        z = self.type_c[t] + self.sub_c[t, sub]
        z[:, :8] += 0.4 * cell_off.astype(np.float32)
        z += s.frag_noise * rng.normal(size=z.shape).astype(np.float32)
        x = z @ self.proj
        x += (s.iso_noise * np.sqrt(s.latent / s.dim) * np.linalg.norm(z, axis=1, keepdims=True)
              * rng.normal(size=x.shape).astype(np.float32) / np.sqrt(s.latent))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)

    def _isotropic(self, n: int, rng: np.random.Generator) -> np.ndarray:
        s = self.spec
        centres = _isotropic_centres(s)
        x = centres[rng.integers(0, s.types, n)] + (
            s.spread / np.sqrt(s.dim) * rng.normal(size=(n, s.dim))).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32)


def _isotropic_centres(spec: SynthSpec) -> np.ndarray:
    c = np.random.default_rng(spec.seed + 4).normal(size=(spec.types, spec.dim))
    return (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)


def write(path: str | Path, spec: SynthSpec, row_group_size: int = 10_000,
          chunk: int = 100_000, shuffle: bool = True) -> Path:
    """Write the dataset to ``path`` (atomically), rows in random order when ``shuffle``."""
    meta = metadata(spec)
    if shuffle:
        meta = meta.take(np.random.default_rng(spec.seed + 2).permutation(meta.num_rows))
    model = VectorModel(spec)
    rng = np.random.default_rng(spec.seed + 3)
    schema = arrow_schema(spec.dim)
    b = [float(pa.compute.min(meta.column("centre_lon")).as_py()) - 0.1,
         float(pa.compute.min(meta.column("centre_lat")).as_py()) - 0.1,
         float(pa.compute.max(meta.column("centre_lon")).as_py()) + 0.1,
         float(pa.compute.max(meta.column("centre_lat")).as_py()) + 0.1]
    schema = with_geo_metadata(schema.empty_table(), b).schema
    path = Path(path)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for lo in range(0, meta.num_rows, chunk):
                part = meta.slice(lo, chunk)
                vec = model.vectors(part, rng)
                cols = {name: (embedding_array(vec) if name == "embedding" else
                               part.column(name)) for name in schema.names}
                w.write_table(pa.table(cols, schema=schema), row_group_size=row_group_size)
    return path
