"""``score``: the cosine similarity of every fragment of a region / time window (or the whole
dataset) to a query, streamed (``mtquery.find.stream``), with the table, a GeoParquet file and
a heat map as outputs (``mtquery.find.sink``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.find.sink import Sink
from mtquery.find.stream import once_more_if_cache_damaged, region_dots
from mtquery.progress import ProgressCallback
from mtquery.query.filters import Filters
from mtquery.query.session import Session
from mtquery.query.vector import QueryVector
from mtquery.vectors.store import unit_query

SCORED_KEY = b"mtquery:scored"
INVALID_KEY = b"mtquery:invalid"


def check_limit(limit: int | None, what: str = "limit") -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit <= 0):
        raise UsageError(f"{what} must be a positive number of rows (got {limit})", what)
    return limit


def check_output_path(path: str | Path | None, suffixes: tuple[str, ...],
                      argument: str) -> Path | None:
    """An output file name with one of ``suffixes`` (not a directory), or None."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise UsageError(f"{argument} must be a file ending in {' or '.join(suffixes)} "
                         f"(got {p.name!r})", argument)
    if p.is_dir():
        raise UsageError(f"{argument} {p} is a directory; give a file name", argument)
    return p


def describe_region(filters: Filters) -> str:
    parts = []
    if filters.bbox is not None:
        parts.append("bbox " + ",".join(f"{v:g}" for v in filters.bbox.as_list()))
    if filters.time.start is not None or filters.time.end is not None:
        parts.append(f"time {filters.time.start or '...'} to {filters.time.end or '...'}")
    if filters.cell is not None:
        parts.append(f"cell {filters.cell}")
    return ", ".join(parts) or "the dataset"


def empty_region(session: Session, filters: Filters) -> DataError:
    return DataError(f"no fragment of {session.dataset.name} lies in the region "
                     f"({describe_region(filters)}); widen bbox / start / end",
                     "bbox" if filters.bbox is not None else "start")


def annotate(table: pa.Table, scored: int, invalid: int) -> pa.Table:
    """Record how many fragments were scored and how many had invalid vectors (NaN)."""
    meta = dict(table.schema.metadata or {})
    meta[SCORED_KEY] = str(int(scored)).encode()
    meta[INVALID_KEY] = str(int(invalid)).encode()
    return table.replace_schema_metadata(meta)


def scored_count(table: pa.Table) -> int:
    """How many fragments a score / classify run scored (the table may hold fewer)."""
    return int((table.schema.metadata or {}).get(SCORED_KEY, str(table.num_rows).encode()))


def score_region(session: Session, query: QueryVector, filters: Filters, *,
                 output: str | Path | None = None, heatmap: str | Path | None = None,
                 limit: int | None = None, resolution: float | None = None,
                 progress: ProgressCallback | None = None) -> pa.Table:
    """Cosine similarity (``score``) of ``query`` with every fragment passing ``filters``:
    the table (unique_id, geometry WKB, score, grid_cell, timestamp, product_id, centre_lat,
    centre_lon), highest first, all rows or the best ``limit``; ``output`` GeoParquet of every
    row (dataset order); ``heatmap`` .tif (GeoTIFF + .png beside it) or .png."""
    from mtquery.find.heatmap import check_heatmap_path

    check_limit(limit)
    out = check_output_path(output, (".parquet", ".geoparquet"), "output")
    heat = check_heatmap_path(heatmap) if heatmap is not None else None
    q = unit_query(query.vector, session.dim)
    title = f"{session.dataset.name}: cosine similarity to {describe_query(query)}"

    def run() -> Sink:
        with Sink("score", limit=limit, output=out, heatmap=heat, title=title,
                  resolution=resolution) as sink:
            for part in region_dots(session, q, filters, progress, "scoring fragments",
                                    extent=out is not None or heat is not None):
                sink.add(part, part.dots)
            if sink.rows == 0:
                raise empty_region(session, filters)
            sink.finish()
        return sink

    sink = once_more_if_cache_damaged(session, run)
    return annotate(sink.table(), sink.rows, sink.rows - sink.valid)


def describe_query(query: QueryVector) -> str:
    if query.source_ids:
        return f"{len(query.source_ids)} example(s)"
    if query.unique_id:
        return f"fragment {query.unique_id[:12]}..."
    return "the query vector"


def brute_scores(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Reference: cosine similarity of each row with ``query`` in float64 (tests,
    benchmarks)."""
    x = np.asarray(vectors, np.float64)
    q = np.asarray(query, np.float64)
    return (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
