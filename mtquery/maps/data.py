"""What a static map draws: the fragments' footprints from the dataset and their colours
(first three PCA components of the unit vectors as RGB, or one column's values)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from mtquery.errors import UsageError
from mtquery.query.filters import Filters
from mtquery.query.session import Session

log = logging.getLogger("mtquery")

#: most fragments a map draws (a notice says when more matched)
MAP_LIMIT = 50_000
#: PCA is fitted on at most this many vectors (seeded sample), then every vector projected
PCA_FIT_ROWS = 20_000
#: columns that cannot colour a map (vectors, geometry, structs)
NOT_COLOURS = ("embedding", "geometry", "bbox", "pixel_bbox")
MISSING = (0.75, 0.75, 0.75, 1.0)  # grey: no colour (zero vector, null value)
BASE = ("unique_id", "centre_lat", "centre_lon", "ST_AsWKB(geometry) AS geometry")


def colour_columns(session: Session) -> list[str]:
    """Columns of the ``embeddings`` view a map can be coloured by."""
    from mtquery.query.search import run

    rows = run(session, "DESCRIBE embeddings").to_pylist()
    return [r["column_name"] for r in rows if r["column_name"] not in NOT_COLOURS]


def check_color(session: Session, color: str) -> str:
    """``pca`` or a column name of the dataset (never pasted into SQL unless it is one)."""
    if color == "pca":
        return color
    names = colour_columns(session)
    if color not in names:
        raise UsageError(f"color must be pca or a column of the dataset: {', '.join(names)} "
                         f"(got {color!r})", "color")
    return color


def map_table(session: Session, filters: Filters, color: str = "pca",
              limit: int = MAP_LIMIT) -> pa.Table:
    """unique_id, centre_lat, centre_lon, geometry (WKB) and ``embedding`` (``pca``) or
    ``value`` (a column) of the fragments passing ``filters``, at most ``limit``."""
    from mtquery.query.search import search

    color = check_color(session, color)
    extra = "embedding" if color == "pca" else f'"{color}" AS value'
    table = search(session, filters, limit, (*BASE, extra))
    if table.num_rows == limit:
        log.warning("the map draws the first %d fragments (by time, cell, id); narrow "
                    "bbox / start / end or raise limit", limit)
    return table


def vectors(table: pa.Table, column: str = "embedding") -> np.ndarray:
    """An (n, dim) float32 array of a fixed-size or variable list column."""
    col = table.column(column).combine_chunks()
    n = len(col)
    if n == 0:
        return np.zeros((0, 0), np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(n, -1)


def pca_rgb(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, 4) RGBA: the first three principal components of the unit vectors, each scaled
    to [0, 1] between its 2nd and 98th percentile. A component's sign makes its largest
    loading positive, so colours do not depend on the SVD routine. Zero / invalid vectors
    are grey."""
    from mtquery.vectors.store import unit_rows

    out = np.tile(np.asarray(MISSING), (len(x), 1))
    if len(x) == 0:
        return out
    u = unit_rows(x).astype(np.float64)
    ok = ~np.isnan(u).any(axis=1)
    v = u[ok]
    if len(v) < 2:
        out[ok, :3] = 0.5
        return out
    fit = v
    if len(v) > PCA_FIT_ROWS:
        fit = v[np.sort(np.random.default_rng(seed).choice(len(v), PCA_FIT_ROWS, False))]
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    comps = vt[:3]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    p = (v - mean) @ (comps * signs[:, None]).T
    if p.shape[1] < 3:
        p = np.pad(p, ((0, 0), (0, 3 - p.shape[1])))
    lo, hi = np.percentile(p, 2, axis=0), np.percentile(p, 98, axis=0)
    out[ok, :3] = np.clip((p - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    return out


@dataclass
class Colours:
    """Per-row RGBA and what explains them: a colour bar (numbers) or a legend (labels)."""

    rgba: np.ndarray
    label: str = ""
    norm: tuple[float, float] | None = None  # numeric: the colour bar's range
    cmap: str = "viridis"
    legend: dict[str, tuple] = field(default_factory=dict)  # categories -> colour


def value_colours(values: list, label: str, cmap: str = "viridis",
                  max_categories: int = 20) -> Colours:
    """Numbers through ``cmap`` (with a colour bar), other values as categories (a legend
    when there are at most ``max_categories``); nulls grey."""
    import matplotlib

    n = len(values)
    rgba = np.tile(np.asarray(MISSING), (n, 1))
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    present = [v for v in values if v is not None]
    if present and len(nums) == len(present):
        arr = np.array([np.nan if v is None else float(v) for v in values])
        ok = np.isfinite(arr)
        if not ok.any():
            return Colours(rgba, label)
        lo, hi = float(arr[ok].min()), float(arr[ok].max())
        scaled = (arr[ok] - lo) / (hi - lo) if hi > lo else np.full(ok.sum(), 0.5)
        rgba[ok] = matplotlib.colormaps[cmap](scaled)
        return Colours(rgba, label, norm=(lo, hi), cmap=cmap)
    cats = sorted({str(v) for v in present})
    palette = matplotlib.colormaps["tab20"]
    index = {c: i for i, c in enumerate(cats)}
    for i, v in enumerate(values):
        if v is not None:
            rgba[i] = palette(index[str(v)] % 20)
    legend = {c: palette(index[c] % 20) for c in cats} if len(cats) <= max_categories else {}
    return Colours(rgba, label, legend=legend)
