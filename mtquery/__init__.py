"""mtquery: generate, query and evaluate Major TOM Earth-observation embeddings.

    import mtquery
    mtquery.search("demo", bbox=(-75.8, 37.5, -75.4, 37.8), limit=50)   # pyarrow.Table
    mtquery.knn("demo", lat=37.6803, lon=-75.548, k=5)                  # pyarrow.Table
    mtquery.info("demo")                                                # dict
    mtquery.change("d", before="2019-01-01..2019-12-31", after="2023-01-01..2023-12-31")
    mtquery.align("siglip-local/", other="dinov2-local/")  # same fragments, two models
    con = mtquery.connect("demo")     # DuckDB with views embeddings, acquisitions, cells
    mtquery.score("demo", ids=[a, b], bbox=..., heatmap="sim.tif")  # every fragment's score
    mtquery.classify("demo", positives=[a, b], detections="found.geojson")  # ClassifyResult
    mtquery.chip("demo", unique_id)   # the fragment's image chip (bytes, media type) or None
    mtquery.stac("demo", "catalogue/")  # STAC Collection + one Item per file (pyarrow.Table)
    mtquery.convert("clay.gpq", "clay-std/")  # any embedding GeoParquet -> the standard
    ds = mtquery.dataset("x.parquet", columns="vector=emb,id=chip")  # roles named, pass anywhere
"""

from mtquery.api import align, cell, change, chip, extract, info, knn, search
from mtquery.errors import DataError, MTQueryError, UsageError
from mtquery.find.api import classify, score
from mtquery.query.session import Session, connect, open_session
from mtquery.standard.grid import (
    cell_bounds,
    cells_in_bbox,
    latlon_to_cell,
    latlon_to_rowcol,
    utm_epsg,
)

__version__ = "0.1.0"

#: names imported on first use (their modules are not needed to start a command)
_LAZY = {"ClassifyResult": "mtquery.find.classify", "HeatMap": "mtquery.find.heatmap",
         "heatmap_raster": "mtquery.find.heatmap",
         "verify_index": "mtquery.vectors.integrity", "stac": "mtquery.io.stac",
         "convert": "mtquery.io.convert", "dataset": "mtquery.io.datasets"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtquery' has no attribute {name!r}")


__all__ = [
    "ClassifyResult",
    "DataError",
    "HeatMap",
    "MTQueryError",
    "Session",
    "UsageError",
    "align",
    "cell",
    "cell_bounds",
    "cells_in_bbox",
    "change",
    "chip",
    "classify",
    "connect",
    "convert",
    "dataset",
    "extract",
    "heatmap_raster",
    "info",
    "knn",
    "latlon_to_cell",
    "latlon_to_rowcol",
    "open_session",
    "score",
    "search",
    "stac",
    "utm_epsg",
    "verify_index",
]
