"""Which ``pixel_bbox`` order a file follows (docs/standard.md, "Fragmenting").

Both mtquery and the reference store ``pixel_bbox = [row_off, col_off, row_off+f, col_off+f]``.
mtquery gives each fragment the footprint of its own pixels ("own"); the reference reads the
first two numbers back as (col, row), so its off-diagonal fragments carry the transposed
footprint ("reference"). Within one sample, the footprint centre moves south when the *row*
offset grows; so we regress centre_lat / centre_lon on (pixel_bbox[0], pixel_bbox[1]) per
sample (vectorised with bincount) and see which number drives latitude.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _group_ids(table: pa.Table) -> np.ndarray:
    keys = [c for c in ("grid_cell", "product_id", "timestamp") if c in table.column_names]
    if not keys:
        return np.zeros(table.num_rows, dtype=np.int64)
    codes = []
    for k in keys:
        col = table.column(k).cast(pa.string())
        enc = pc.dictionary_encode(pc.fill_null(col, "")).combine_chunks()
        codes.append(np.asarray(enc.indices, dtype=np.int64))
    _, gid = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    return gid.ravel()


def _slopes(gid: np.ndarray, x1: np.ndarray, x2: np.ndarray, y: np.ndarray, n: int):
    """Per-group least-squares slopes of y on (x1, x2); det ~ 0 where x1, x2 are collinear."""
    cnt = np.bincount(gid, minlength=n).astype(np.float64)
    cnt_safe = np.maximum(cnt, 1)

    def centred(v):
        return v - (np.bincount(gid, v, minlength=n) / cnt_safe)[gid]

    a, b, c = centred(x1), centred(x2), centred(y)
    s11 = np.bincount(gid, a * a, minlength=n)
    s22 = np.bincount(gid, b * b, minlength=n)
    s12 = np.bincount(gid, a * b, minlength=n)
    s1y = np.bincount(gid, a * c, minlength=n)
    s2y = np.bincount(gid, b * c, minlength=n)
    det = s11 * s22 - s12 * s12
    ok = (cnt >= 3) & (det > 1e-6 * np.maximum(s11 * s22, 1e-300))
    det_safe = np.where(ok, det, 1.0)
    b1 = (s22 * s1y - s12 * s2y) / det_safe
    b2 = (s11 * s2y - s12 * s1y) / det_safe
    return b1, b2, ok


def detect_pixel_bbox_order(table: pa.Table) -> str:
    """"own" (footprint of the fragment's own pixels, mtquery), "reference" (transposed, as the
    reference code writes) or "unknown" (no sample with off-diagonal fragments, or samples
    disagree). Uses grid_cell, product_id, timestamp, pixel_bbox, centre_lat, centre_lon."""
    need = ("pixel_bbox", "centre_lat", "centre_lon")
    if table.num_rows < 3 or any(c not in table.column_names for c in need):
        return "unknown"
    pbcol = table.column("pixel_bbox").combine_chunks()
    if pbcol.null_count:
        return "unknown"
    flat = np.asarray(pbcol.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    if flat.size != 4 * table.num_rows:
        return "unknown"
    pb = flat.reshape(-1, 4)
    lat = np.asarray(table.column("centre_lat").to_numpy(), dtype=np.float64)
    lon = np.asarray(table.column("centre_lon").to_numpy(), dtype=np.float64)
    if np.isnan(lat).any() or np.isnan(lon).any():
        return "unknown"
    gid = _group_ids(table)
    n = int(gid.max()) + 1
    # longitudes relative to the group's first one, unwrapped across the antimeridian
    first = np.full(n, np.nan)
    first[gid[::-1]] = lon[::-1]
    dlon = (lon - first[gid] + 180.0) % 360.0 - 180.0
    r, c = pb[:, 0], pb[:, 1]
    la1, la2, ok = _slopes(gid, r, c, lat, n)
    lo1, lo2, _ = _slopes(gid, r, c, dlon, n)
    if not ok.any():
        return "unknown"
    # own: latitude follows the row offset (southwards) and longitude the column offset
    own = (np.abs(la1) > np.abs(la2)) & (np.abs(lo2) > np.abs(lo1))
    ref = (np.abs(la2) > np.abs(la1)) & (np.abs(lo1) > np.abs(lo2))
    n_own, n_ref = int((own & ok).sum()), int((ref & ok).sum())
    total = int(ok.sum())
    if n_own >= 0.9 * total and n_own > 0:
        return "own"
    if n_ref >= 0.9 * total and n_ref > 0:
        return "reference"
    return "unknown"
