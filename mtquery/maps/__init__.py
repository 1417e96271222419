"""Static maps (matplotlib): a dataset's fragments as filled footprints coloured by the first
three PCA components of their vectors (RGB) or by a column, the query of a kNN search with
its neighbours coloured by distance, and sampled centres (``eval report``). One panel per
separate region, each frame fitted to its region, aspect corrected for latitude, with a
title and a scale bar. Functions return matplotlib Figures; ``save`` writes PNG, SVG, PDF
or HTML (the SVG in a page) atomically. The CLI (``mtquery map``, ``knn --map``) wraps these.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mtquery.errors import UsageError
from mtquery.maps.data import MAP_LIMIT, Colours, map_table, pca_rgb, value_colours, vectors
from mtquery.maps.draw import Layer, footprint_rings, render, square_rings
from mtquery.query.filters import Filters
from mtquery.query.session import DatasetArg, Session

if TYPE_CHECKING:
    from matplotlib.figure import Figure


__all__ = ["MAP_LIMIT", "check_map_path", "dataset_map", "knn_map", "points_map", "render",
           "save", "table_map"]

SUFFIXES = (".png", ".svg", ".pdf", ".html")
QUERY_COLOUR = (0.85, 0.1, 0.1, 1.0)


def check_map_path(path: str | Path, argument: str = "output") -> Path:
    """A map file name ending in .png, .svg, .pdf or .html (not a directory)."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise UsageError(f"a map file must end in {', '.join(SUFFIXES)} (got {p.name!r})",
                         argument)
    if p.is_dir():
        raise UsageError(f"{p} is a directory; give a map file name", argument)
    return p


def save(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically and close it."""
    import matplotlib.pyplot as plt

    from mtquery.io.fsio import atomic_path, atomic_write_text

    p = check_map_path(path)
    try:
        if p.suffix.lower() == ".html":
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            title = fig._suptitle.get_text() if fig._suptitle else "mtquery map"
            atomic_write_text(p, "<!doctype html>\n<html><head><meta charset='utf-8'><title>"
                              f"{html.escape(title)}</title></head><body style='margin:0'>\n"
                              f"{buf.getvalue()}\n</body></html>\n")
        else:
            with atomic_path(p) as tmp:
                fig.savefig(tmp, format=p.suffix.lower()[1:], dpi=dpi)
    finally:
        plt.close(fig)
    return p


def _geoms(table: pa.Table) -> list:
    import shapely

    return list(shapely.from_wkb(table.column("geometry").to_pylist()))


def _centres(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(table.column("centre_lat").to_pylist(), float),
            np.asarray(table.column("centre_lon").to_pylist(), float))


def table_map(table: pa.Table, colours: Colours | np.ndarray, title: str,
              gap_km: float | None = None) -> Figure:
    """A map of a table with ``geometry`` (WKB), ``centre_lat``, ``centre_lon``: each row's
    footprint filled with its colour (``Colours`` or an (n, 3|4) array in [0, 1])."""
    if table.num_rows == 0:
        raise UsageError("nothing to draw: no fragment matches", "bbox")
    rgba = colours.rgba if isinstance(colours, Colours) else _rgba(colours)
    rings, owner = footprint_rings(_geoms(table))
    layer = Layer(rings, owner, rgba)
    return render([layer], _centres(table), title,
                  colours if isinstance(colours, Colours) else None, gap_km)


def _rgba(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, float)
    return rgb if rgb.shape[1] == 4 else np.column_stack([rgb, np.ones(len(rgb))])


def dataset_map(dataset: DatasetArg | Session = None, *, bbox: str | Sequence[float] | None = None,
                start: str | None = None, end: str | None = None, cell: str | None = None,
                color: str = "pca", limit: int = MAP_LIMIT, title: str | None = None,
                gap_km: float | None = None) -> Figure:
    """The fragments passing ``bbox`` / ``start`` / ``end`` / ``cell`` as filled footprints,
    coloured by the first three PCA components of their vectors (``color="pca"``, paper
    fig. 4-5) or by a column (numbers: viridis with a colour bar; labels: a legend)."""
    from mtquery.query.session import session_of

    filters = Filters.of(bbox, start, end, cell)
    with session_of(dataset) as s:
        table = map_table(s, filters, color, limit)
        name = s.dataset.name
    if color == "pca":
        colours = Colours(pca_rgb(vectors(table)), "PCA")
        what = "first 3 PCA components as RGB"
    else:
        colours = value_colours(table.column("value").to_pylist(), color)
        what = f"coloured by {color}"
    return table_map(table, colours, title or f"{name}: {what} ({table.num_rows} fragments)",
                     gap_km)


def knn_map(session: Session, table: pa.Table, title: str | None = None,
            gap_km: float | None = None) -> Figure:
    """The query fragment(s) (red outline) and the neighbours of a kNN ``table`` (with
    ``geometry``), filled by distance (viridis, nearest bright) and labelled by rank."""
    from mtquery.api import query_of, with_geometry

    query = query_of(table)
    qids = list(query["source_ids"])
    qtab = pa.table({"unique_id": pa.array(qids, pa.string())})
    qtab = with_geometry(session, qtab)
    n = table.num_rows
    dist = table.column("distance").to_pylist()
    colours = value_colours(dist, "cosine distance", cmap="viridis_r")
    rings, owner = footprint_rings(_geoms(table))
    layers = [Layer(rings, owner, colours.rgba,
                    labels=[str(r) for r in table.column("rank").to_pylist()])]
    lat, lon = _centres(table)
    qgeoms = _geoms(qtab)
    if qgeoms:
        qrings, qowner = footprint_rings(qgeoms)
        layers.append(Layer(qrings, qowner + n, np.tile(QUERY_COLOUR, (n + len(qids), 1)),
                            outline=True))
        qc = [g.centroid for g in qgeoms if g is not None]
        lat = np.concatenate([lat, [p.y for p in qc]])
        lon = np.concatenate([lon, [p.x for p in qc]])
    if not n and not qgeoms:
        raise UsageError("nothing to draw: no neighbours and no query footprint", "k")
    if title is None:
        what = (f"{query['unique_id'][:16]}... (cell {query['grid_cell']})"
                if query["unique_id"]
                else f"{len(qids)} example(s)" if qids else "the query vector")
        title = f"{session.dataset.name}: {n} nearest to {what}; query outlined in red"
    return render(layers, (lat, lon), title, colours, gap_km)


def points_map(lat: Sequence[float], lon: Sequence[float], rgb: Sequence, title: str,
               gap_km: float | None = None) -> Figure:
    """Sampled fragment centres (no footprints, e.g. ``eval report``'s PCA map) as squares
    as wide as the typical spacing, coloured ``rgb`` ((n, 3) in [0, 1])."""
    la, lo = np.asarray(lat, float), np.asarray(lon, float)
    if len(la) == 0:
        raise UsageError("nothing to draw: no points", "lat")
    rings = square_rings(la, lo)
    layer = Layer(rings, np.arange(len(rings)), _rgba(np.asarray(rgb, float)))
    return render([layer], (la, lo), title, None, gap_km)
