"""mtquery: generate, query and evaluate Major TOM Earth-observation embeddings."""

from mtquery.engine import Session, connect, open_session
from mtquery.errors import DataError, MTQueryError, UsageError
from mtquery.grid import cell_bounds, cells_in_bbox, latlon_to_cell, latlon_to_rowcol, utm_epsg

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "MTQueryError",
    "Session",
    "UsageError",
    "cell_bounds",
    "cells_in_bbox",
    "connect",
    "latlon_to_cell",
    "latlon_to_rowcol",
    "open_session",
    "utm_epsg",
]
