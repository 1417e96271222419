"""Stream every fragment of a region / time window with ``unit(x) . v`` for one vector ``v``:
the similarity of a query (``v`` a unit vector) or a linear classifier's logit (``v`` its
weights). Never the whole matrix in memory.

DuckDB streams the fragments' columns (footprint as WKB, centre, id, time) in Arrow batches
with the filters pushed into the Parquet scan. The vectors come from the dataset's vector
store when there is one (a fresh index's store, or the exact scan's cache, built on first use
for local data; ``mtquery.io.cache``): each batch's row ids are read from the store in blocks
(``mtquery.find.kernel``). Without a store (remote data, cache off or too large) the
embedding column rides along in the batches and is scored there; remote reads are checked
against the read budget first, as ``knn`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pyarrow as pa

from mtquery.find.kernel import StoreScanner, batch_dot
from mtquery.progress import ProgressCallback, emit
from mtquery.query.filters import FRAGMENT_REACH_KM, Filters, where_sql
from mtquery.query.search import sql_error
from mtquery.query.session import Session
from mtquery.vectors.store import RowMap, VectorStore

T = TypeVar("T")
BATCH_ROWS = 65_536
#: the columns of every scored table besides the value (score / probability), in order
ROW_COLUMNS = ("unique_id", "geometry", "grid_cell", "timestamp", "product_id", "centre_lat",
               "centre_lon")
EXTENT = ("_xmin", "_ymin", "_xmax", "_ymax")


def find_store(session: Session, build: bool = True,
               progress: ProgressCallback | None = None) -> VectorStore | None:
    """The store serving the dataset's vectors: its index's (when fresh) or the cache's
    (built when ``build`` and allowed); None for remote data or without either."""
    from mtquery.errors import DataError
    from mtquery.io.cache import cached_store
    from mtquery.vectors.index import STORE, check_fresh, find_index
    from mtquery.vectors.store import load_store

    ds = session.dataset
    if ds.remote:
        return None
    path = find_index(ds)
    store = load_store(path / STORE) if path is not None else None
    if store is not None and store.dim == session.dim:
        try:
            check_fresh(store, ds, path)
            return store
        except DataError:
            pass  # stale or foreign index: the cache serves
    return cached_store(ds, session.dim, build=build, progress=progress)


def region_sql(filters: Filters, has_bbox_column: bool, embedding: bool,
               extent: bool = True, reach_km: float | None = FRAGMENT_REACH_KM
               ) -> tuple[str, list]:
    """The streamed scan: row columns, location, footprint extent (when ``extent``: the
    bounds of heat maps and GeoParquet) and the vector (when ``embedding``)."""
    where, params = where_sql(filters, has_bbox_column, reach_km)
    cols = ("unique_id, ST_AsWKB(geometry) AS geometry, grid_cell, timestamp, product_id, "
            "centre_lat, centre_lon, source_file, source_row")
    if extent:
        cols += (", ST_XMin(geometry) AS _xmin, ST_YMin(geometry) AS _ymin, "
                 "ST_XMax(geometry) AS _xmax, ST_YMax(geometry) AS _ymax")
    if embedding:
        cols += ", embedding"
    return f"SELECT {cols}\nFROM embeddings\n{where}".rstrip(), params


def planned_rows(session: Session, filters: Filters) -> int | None:
    """Rows in the row groups the scan may read (from the Parquet footers): the progress
    total (an upper bound on the rows that pass the filters)."""
    from mtquery.io.cost import footers_of, plan

    try:
        footers = footers_of(session.dataset)
    except Exception:  # progress only: never fail a scan over it
        return None
    if footers is None:
        return None
    return int(plan(footers, filters, "knn").rows)


def quiet_duckdb(session: Session) -> None:
    """No DuckDB progress bar on stdout during long scans (the caller's ``progress``
    reports); a locked-down (read-only) session keeps its settings."""
    try:
        session.con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        pass


@dataclass
class Scored:
    """One streamed batch: ``rows`` (ROW_COLUMNS) and ``dots`` (``unit(x) . v``, NaN for
    invalid vectors), and the envelope of the batch's footprints."""

    rows: pa.Table
    dots: np.ndarray
    box: tuple[float, float, float, float] | None


def _box(t: pa.Table) -> tuple[float, float, float, float] | None:
    import pyarrow.compute as pc

    if EXTENT[0] not in t.column_names:
        return None
    vals = [pc.min(t.column(EXTENT[0])).as_py(), pc.min(t.column(EXTENT[1])).as_py(),
            pc.max(t.column(EXTENT[2])).as_py(), pc.max(t.column(EXTENT[3])).as_py()]
    return None if any(v is None for v in vals) else tuple(float(v) for v in vals)


def row_ids(rowmap: RowMap, files: pa.ChunkedArray, rows: pa.ChunkedArray) -> np.ndarray:
    """Store row ids of (source_file, source_row): each distinct file name looked up once
    (a batch names one or two files; sorting 65,536 names per batch cost a second a
    million rows)."""
    enc = files.combine_chunks().dictionary_encode()
    base = rowmap.global_rows(enc.dictionary.to_numpy(zero_copy_only=False),
                              np.zeros(len(enc.dictionary), np.int64))
    idx = enc.indices.to_numpy(zero_copy_only=False)
    return base[idx] + rows.to_numpy().astype(np.int64)


def _store_dots(scanner: StoreScanner, store: VectorStore, t: pa.Table) -> np.ndarray:
    ids = row_ids(scanner.rowmap, t.column("source_file"), t.column("source_row"))
    if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return scanner.rows(ids)
    order = np.argsort(ids, kind="stable")
    out = np.empty(len(ids), dtype=np.float32)
    out[order] = scanner.rows(ids[order])
    return out


def region_dots(session: Session, v: np.ndarray, filters: Filters,
                progress: ProgressCallback | None = None, task: str = "scoring fragments",
                use_store: bool = True, extent: bool = True) -> Iterator[Scored]:
    """Batches of the fragments passing ``filters`` with ``unit(x) . v``, in dataset order.
    Remote data: refused (``ReadRefused``) above the read budget before any vector is read."""
    ds = session.dataset
    if ds.remote:
        from mtquery.io.cost import guard

        guard(ds, filters, "knn")
    store = find_store(session, progress=progress) if use_store else None
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    scanner = StoreScanner(store, v) if store is not None else None
    total = planned_rows(session, filters)
    emit(progress, task, 0, total=total, unit="fragments")
    sql, params = region_sql(filters, session.shape.has_bbox, embedding=store is None,
                             extent=extent, reach_km=session.shape.reach_km)
    done = 0
    try:
        quiet_duckdb(session)
        reader = session.con.execute(sql, params).to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            t = pa.Table.from_batches([batch])
            if not t.num_rows:
                continue
            if scanner is not None:
                dots = _store_dots(scanner, store, t)
            else:
                dots = batch_dot(t.column("embedding"), v, session.dim)
            done += t.num_rows
            emit(progress, task, t.num_rows, total=max(total or 0, done) or None,
                 unit="fragments")
            yield Scored(t.select(list(ROW_COLUMNS)), dots, _box(t))
    except duckdb.Error as exc:
        raise sql_error(exc) from exc
    finally:
        if scanner is not None:
            scanner.close()
    if total and done < total:  # the plan counted whole row groups; finish the bar
        emit(progress, task, 0, total=done or None, unit="fragments")


def once_more_if_cache_damaged(session: Session, run: Callable[[], T]) -> T:
    """``run()``; when it meets a damaged block of the dataset's vector cache, one notice,
    the cache removed, and ``run()`` again (the store is built anew from the Parquet files).
    Damage anywhere else (an index's store) stays an error that names the file."""
    from mtquery.io.cache import cache_path, discard_damaged
    from mtquery.vectors.integrity import Damaged

    try:
        return run()
    except Damaged as exc:
        try:
            cache = cache_path(session.dataset)
        except OSError:
            cache = None
        if cache is None or cache not in Path(exc.path).parents:
            raise
        discard_damaged(cache, exc)
    return run()
