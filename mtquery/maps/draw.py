"""Drawing with matplotlib: filled footprints in one panel per separate region, each frame
fitted to its region with the aspect corrected for latitude (1 / cos(lat)), country outlines
behind (Natural Earth 1:110m, shipped with the web page), a title and a scale bar."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from mtquery.maps.data import Colours

KM_PER_DEG = 111.32
MAX_PANELS = 6
WATER = "#f4f7fa"
LAND = "#e4e4de"
COAST = "#a9a9a0"


@dataclass
class Layer:
    """Polygons (lists of (x, y) rings, one per footprint part) with their colours;
    ``outline`` draws edges only (the query of a kNN map)."""

    rings: list[np.ndarray]
    owner: np.ndarray  # index of the row each ring belongs to
    rgba: np.ndarray  # per row
    outline: bool = False
    labels: Sequence[str] | None = None  # per row, drawn at the centre (ranks)


def footprint_rings(geoms: Sequence) -> tuple[list[np.ndarray], np.ndarray]:
    """Exterior rings of shapely (multi)polygons and the row each came from."""
    rings, owner = [], []
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            continue
        for part in getattr(g, "geoms", [g]):
            if part.geom_type == "Polygon":
                rings.append(np.asarray(part.exterior.coords))
                owner.append(i)
    return rings, np.asarray(owner, dtype=np.int64)


def square_rings(lat: np.ndarray, lon: np.ndarray) -> list[np.ndarray]:
    """Squares around points, their side the distance to the nearest point (75th
    percentile: fragments overlap, so most neighbours are closer than a fragment is wide),
    for maps of sampled centres without footprints."""
    side_km = spacing_km(lat, lon, q=75)
    half_lat = side_km / KM_PER_DEG / 2
    rings = []
    for la, lo in zip(lat, lon):
        half_lon = half_lat / max(math.cos(math.radians(la)), 0.01)
        rings.append(np.array([(lo - half_lon, la - half_lat), (lo + half_lon, la - half_lat),
                               (lo + half_lon, la + half_lat), (lo - half_lon, la + half_lat)]))
    return rings


def _xy_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lat = np.asarray(lat, float)
    return np.column_stack([np.asarray(lon, float) * KM_PER_DEG * np.cos(np.radians(lat)),
                            lat * KM_PER_DEG])


def spacing_km(lat: np.ndarray, lon: np.ndarray, sample: int = 2000, q: float = 50) -> float:
    """The ``q``-th percentile distance from a point to its nearest neighbour (seeded sample
    of points)."""
    xy = _xy_km(lat, lon)
    if len(xy) < 2:
        return 10.0
    rng = np.random.default_rng(0)
    pick = rng.choice(len(xy), min(sample, len(xy)), replace=False)
    best = np.full(len(pick), np.inf)
    for start in range(0, len(xy), 4096):
        d = np.linalg.norm(xy[pick, None, :] - xy[None, start:start + 4096, :], axis=2)
        d[d == 0] = np.inf
        best = np.minimum(best, d.min(axis=1))
    finite = best[np.isfinite(best)]
    return float(np.percentile(finite, q)) if len(finite) else 10.0


def regions(lat: Sequence[float], lon: Sequence[float], gap_km: float | None = None
            ) -> list[np.ndarray]:
    """Row indices of each separate region, largest first: points fall in cells of
    ``gap_km`` (default 10 x the typical spacing, at least 25 km) and touching occupied
    cells form one region."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    if len(lat) == 0:
        return []
    gap = gap_km or max(10 * spacing_km(lat, lon), 25.0)
    xy = _xy_km(lat, lon)
    keys = [(int(a), int(b)) for a, b in np.floor(xy / gap)]
    cells: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(keys):
        cells.setdefault(key, []).append(i)
    seen: set[tuple[int, int]] = set()
    groups = []
    for key in cells:
        if key in seen:
            continue
        stack, members = [key], []
        seen.add(key)
        while stack:
            cx, cy = stack.pop()
            members += cells[(cx, cy)]
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    nb = (cx + dx, cy + dy)
                    if nb in cells and nb not in seen:
                        seen.add(nb)
                        stack.append(nb)
        groups.append(np.sort(np.asarray(members)))
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


@functools.lru_cache(maxsize=1)
def countries() -> list[np.ndarray]:
    """Outer rings of the Natural Earth 1:110m countries shipped in ``mtquery.web``."""
    from importlib import resources

    path = resources.files("mtquery.web").joinpath("static/countries-110m.geojson")
    doc = json.loads(path.read_text(encoding="utf-8"))
    rings = []
    for f in doc["features"]:
        geom = f["geometry"]
        polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        rings += [np.asarray(p[0]) for p in polys]
    return rings


def nice_length(km: float) -> float:
    """A round length (1, 2, 5 x 10^n km) no longer than ``km``."""
    if km <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(km))
    return max(m * exp for m in (1, 2, 5) if m * exp <= km)


def scale_bar(ax: Axes, lat: float) -> float:
    """A bar in the lower left about a fifth of the frame wide; returns its length in km."""
    import matplotlib.patheffects as pe

    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    km_per_deg = KM_PER_DEG * max(math.cos(math.radians(lat)), 0.01)
    length = nice_length((x1 - x0) * km_per_deg / 5)
    dx = length / km_per_deg
    x, y = x0 + 0.04 * (x1 - x0), y0 + 0.05 * (y1 - y0)
    halo = [pe.withStroke(linewidth=4, foreground="white")]
    ax.plot([x, x + dx], [y, y], color="black", linewidth=2.5, solid_capstyle="butt",
            path_effects=halo, zorder=5)
    text = f"{length:g} km" if length >= 1 else f"{length * 1000:g} m"
    ax.text(x + dx / 2, y + 0.015 * (y1 - y0), text, ha="center", va="bottom", fontsize=8,
            path_effects=halo, zorder=5)
    return length


def _frame(rings: list[np.ndarray], pad: float = 0.04) -> tuple[float, float, float, float]:
    pts = np.concatenate(rings)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    w, h = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
    return x0 - pad * w, y0 - pad * h, x1 + pad * w, y1 + pad * h


def _select(layers: list[Layer], rows: np.ndarray) -> list[tuple[Layer, list[int]]]:
    wanted = set(rows.tolist())
    return [(layer, [j for j, o in enumerate(layer.owner) if int(o) in wanted])
            for layer in layers]


def _panel(ax: Axes, parts: list[tuple[Layer, list[int]]], frame: tuple, title: str) -> None:
    import matplotlib.patheffects as pe
    from matplotlib.collections import PolyCollection

    for layer, keep in parts:
        if not keep:
            continue
        rings = [layer.rings[j] for j in keep]
        owners = layer.owner[keep]
        if layer.outline:
            coll = PolyCollection(rings, facecolors="none", edgecolors=layer.rgba[owners],
                                  linewidths=2.0, zorder=4)
        else:
            coll = PolyCollection(rings, facecolors=layer.rgba[owners],
                                  edgecolors=layer.rgba[owners], linewidths=0.3, zorder=3)
        ax.add_collection(coll)
        if layer.labels is not None and len(set(owners.tolist())) <= 30:
            halo = [pe.withStroke(linewidth=2.5, foreground="white")]
            for o in sorted(set(owners.tolist())):
                c = np.concatenate([r for r, w in zip(rings, owners) if w == o]).mean(axis=0)
                ax.text(c[0], c[1], layer.labels[o], ha="center", va="center", fontsize=7,
                        fontweight="bold", path_effects=halo, zorder=6)
    x0, y0, x1, y1 = frame
    ax.set_facecolor(WATER)
    ax.add_collection(PolyCollection(countries(), facecolors=LAND, edgecolors=COAST,
                                     linewidths=0.5, zorder=1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    lat = (y0 + y1) / 2
    ax.set_aspect(1 / max(math.cos(math.radians(lat)), 0.01), adjustable="box")
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
    scale_bar(ax, lat)


def _box(frame: tuple, size: float = 4.4) -> tuple[float, float]:
    """Width and height (inches) of a panel showing ``frame`` at its true aspect."""
    x0, y0, x1, y1 = frame
    ratio = (y1 - y0) / ((x1 - x0) * max(math.cos(math.radians((y0 + y1) / 2)), 0.01))
    ratio = min(max(ratio, 0.35), 2.5)
    return (size / ratio, size) if ratio >= 1 else (size, size * ratio)


def render(layers: list[Layer], centres: tuple[np.ndarray, np.ndarray], title: str,
           colours: Colours | None = None, gap_km: float | None = None,
           max_panels: int = MAX_PANELS) -> Figure:
    """A figure: one panel per separate region of ``centres`` (lat, lon per row), at most
    ``max_panels`` (the largest; the title counts the rest), with a colour bar or legend
    from ``colours`` (``data.Colours``)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = regions(*centres, gap_km=gap_km)
    shown, left = groups[:max_panels], groups[max_panels:]
    if left:
        title += f" ({len(left)} smaller region(s), {sum(map(len, left))} fragments not drawn)"
    panels = []
    for rows in shown:
        parts = _select(layers, rows)
        rings = [layer.rings[j] for layer, keep in parts for j in keep]
        if rings:
            panels.append((rows, parts, _frame(rings)))
    ncols = min(max(len(panels), 1), 3)
    nrows = max(math.ceil(len(panels) / ncols), 1)
    boxes = [_box(frame) for _, _, frame in panels] or [(4.4, 4.4)]
    width = max(sum(w for w, _ in boxes[r * ncols:(r + 1) * ncols]) for r in range(nrows))
    height = sum(max(h for _, h in boxes[r * ncols:(r + 1) * ncols]) for r in range(nrows))
    extra = 1.2 if colours is not None and colours.norm is not None else 0.3
    width = max(width + 0.6 + extra, 5.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height + 1.0), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    lat, lon = (np.asarray(c, float) for c in centres)
    for ax, (rows, parts, frame) in zip(axes.flat, panels):
        la, lo = float(np.mean(lat[rows])), float(np.mean(lon[rows]))
        _panel(ax, parts, frame, f"{len(rows)} fragment(s) around {la:.3f}, {lo:.3f}")
    chars = max(int(width * 11), 40)
    fig.suptitle("\n".join(textwrap.wrap(title, chars)), fontsize=10)
    _explain(fig, axes, colours)
    return fig


def _explain(fig: Figure, axes: np.ndarray, colours: Colours | None) -> None:
    if colours is None:
        return
    import matplotlib
    from matplotlib.patches import Patch

    visible = [ax for ax in axes.flat if ax.get_visible()]
    if colours.norm is not None:
        lo, hi = colours.norm
        sm = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(lo, hi), colours.cmap)
        fig.colorbar(sm, ax=visible, shrink=0.8, label=colours.label)
    elif colours.legend:
        handles = [Patch(color=c, label=k) for k, c in colours.legend.items()]
        visible[-1].legend(handles=handles, fontsize=7, title=colours.label, loc="upper right",
                           title_fontsize=7)
