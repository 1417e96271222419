"""Exact cosine kNN: a scan of the dataset's vector store (memory-mapped unit vectors) when
there is one, else a stream of Arrow batches out of DuckDB (filters pushed down into the
Parquet scan) scored one float32 matrix-vector product per batch. Both rank with
``store.top_k``: ties go to the lower row id, zero / invalid vectors are skipped and counted."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa

from mtquery.query.filters import FRAGMENT_REACH_KM, Filters, where_sql
from mtquery.query.search import check_times, filtered_locations, sql_error
from mtquery.query.session import Session
from mtquery.query.vector import QueryVector
from mtquery.vectors.store import (
    RESULT_COLUMNS,
    VectorStore,
    cast_rows,
    empty_rows,
    result_table,
    top_k,
    unit_query,
    with_skipped,
)

BATCH_ROWS = 65_536
FILE_SHIFT = 40  # row id of a streamed row: file rank << 40 | row in file


def scan_sql(filters: Filters, has_bbox_column: bool,
             reach_km: float | None = FRAGMENT_REACH_KM) -> tuple[str, list]:
    """The candidate scan: result columns, location and vector of every row passing filters."""
    where, params = where_sql(filters, has_bbox_column, reach_km)
    cols = ", ".join(RESULT_COLUMNS)
    return (f"SELECT {cols}, source_file, source_row, embedding\nFROM embeddings\n{where}"
            .rstrip(), params)


def allowed_ids(session: Session, store: VectorStore, filters: Filters) -> np.ndarray | None:
    """Sorted row ids of the rows passing ``filters`` (None: no filter)."""
    if filters.empty:
        return None
    t = filtered_locations(session, filters)
    if t.num_rows == 0:
        return np.empty(0, np.int64)
    ids = store.rowmap.global_rows(t.column("source_file").to_numpy(zero_copy_only=False),
                                   t.column("source_row").to_numpy())
    return np.unique(ids)


def drop_ids(rows: pa.Table, scores: np.ndarray, exclude: tuple[str, ...], k: int
              ) -> tuple[pa.Table, np.ndarray]:
    if exclude and rows.num_rows:
        keep = ~np.isin(np.asarray(rows.column("unique_id").to_pylist(), dtype=object),
                        np.asarray(exclude, dtype=object))
        rows, scores = rows.filter(pa.array(keep)), scores[keep]
    return rows.slice(0, k), scores[:k]


def excluding(fetch: Callable[[int], tuple[pa.Table, np.ndarray]], k: int,
              exclude: tuple[str, ...], limit: int) -> tuple[pa.Table, np.ndarray]:
    """The best k (rows, scores) once the query's own fragments are left out: ``fetch(m)``
    gives the best m. When copies of them (the same rows in several files) fill the first
    k + len(exclude), more are asked for, so the answer is never emptied by duplicates."""
    m = k + len(exclude)
    while True:
        rows, scores = fetch(m)
        kept = drop_ids(rows, scores, exclude, k)
        if kept[0].num_rows >= k or rows.num_rows < m or m >= limit:
            return kept
        m = min(limit, m * 4)


def store_knn(session: Session, store: VectorStore, query: QueryVector, k: int,
              filters: Filters, include_self: bool = False) -> pa.Table:
    """Exact top-k over the store (all rows or those passing ``filters``)."""
    q = unit_query(query.vector, session.dim)
    exclude = () if include_self else query.exclude_ids
    ids = allowed_ids(session, store, filters)
    scores = store.scores(q, ids)
    skipped = store.count_invalid(ids)
    rid = np.arange(store.n, dtype=np.int64) if ids is None else ids

    def fetch(m: int) -> tuple[pa.Table, np.ndarray]:
        pos, sc = top_k(scores, m, rid)
        return store.rows(rid[pos]), sc

    rows, sc = excluding(fetch, k, exclude, len(rid))
    return with_skipped(result_table(sc, rows), skipped)


class _StreamTop:
    """Running top-k over streamed batches; ids are (file rank, row) packed in an int64."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.ids = np.empty(0, np.int64)
        self.scores = np.empty(0, np.float32)
        self.rows: list[pa.Table] = []

    def add(self, scores: np.ndarray, ids: np.ndarray, rows: pa.Table) -> None:
        pos, sc = top_k(scores, self.k, ids)
        if pos.size == 0:
            return
        self.ids = np.concatenate([self.ids, ids[pos]])
        self.scores = np.concatenate([self.scores, sc])
        self.rows.append(rows.take(pa.array(pos)))
        if len(self.ids) > 4 * self.k:
            self._shrink()

    def _shrink(self) -> None:
        table = pa.concat_tables(self.rows) if self.rows else None
        pos, self.scores = top_k(self.scores, self.k, self.ids)
        self.ids = self.ids[pos]
        self.rows = [table.take(pa.array(pos))] if table is not None else []

    def result(self) -> tuple[np.ndarray, pa.Table | None]:
        self._shrink()
        return self.scores, (self.rows[0] if self.rows else None)


def _file_ranks(names: np.ndarray, sources: dict[str, int]) -> np.ndarray:
    """Rank of each file name in the dataset's order; files a glob expanded (not listed one
    by one) rank after the listed ones, by a stable hash of their name."""
    uniq, inv = np.unique(names.astype(str), return_inverse=True)
    ranks = np.array([sources.get(os.path.normpath(u), len(sources)
                                  + zlib.crc32(u.encode()) % (1 << 22)) for u in uniq],
                     dtype=np.int64)
    return ranks[inv.reshape(-1)]


def _batch_scores(column: pa.Array, q: np.ndarray, dim: int) -> np.ndarray:
    """Cosine similarity of each vector with the unit query; NaN for null, zero or
    non-finite vectors."""
    out = np.full(len(column), np.nan, dtype=np.float32)
    valid = np.asarray(column.is_valid())
    filled = column.filter(pa.array(valid)) if column.null_count else column
    x = filled.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = (x @ q) / np.sqrt(np.einsum("ij,ij->i", x, x))
    s[~np.isfinite(s)] = np.nan
    out[valid] = s
    return out


def stream_knn(session: Session, query: QueryVector, k: int, filters: Filters,
               include_self: bool = False) -> pa.Table:
    """Exact top-k by streaming the Parquet files (remote data, or no store)."""
    if session.dataset.remote:  # cost first: refused above the budget before any read
        from mtquery.io.cost import guard

        guard(session.dataset, filters, "knn")
    q = unit_query(query.vector, session.dim)
    exclude = () if include_self else query.exclude_ids
    check_times(session, filters)
    sql, params = scan_sql(filters, session.shape.has_bbox, session.shape.reach_km)
    sources = {os.path.normpath(s): i for i, s in enumerate(session.dataset.sources)}
    seen = {"skipped": 0}

    def fetch(m: int) -> tuple[pa.Table, np.ndarray]:
        top = _StreamTop(m)
        skipped = 0
        try:
            reader = session.execute(sql, params).to_arrow_reader(BATCH_ROWS)
            for batch in reader:
                scores = _batch_scores(batch.column("embedding"), q, session.dim)
                skipped += int(np.isnan(scores).sum())
                files = batch.column("source_file").to_numpy(zero_copy_only=False)
                ids = (_file_ranks(files, sources) << FILE_SHIFT) + batch.column(
                    "source_row").to_numpy()
                top.add(scores, ids,
                        pa.Table.from_batches([batch]).select(list(RESULT_COLUMNS)))
        except duckdb.Error as exc:
            raise sql_error(exc, session) from exc
        seen["skipped"] = skipped
        scores, rows = top.result()
        return (cast_rows(rows) if rows is not None else empty_rows()), scores

    rows, scores = excluding(fetch, k, exclude, 1 << 62)  # stops when the rows run out
    return with_skipped(result_table(scores, rows), seen["skipped"])


def exact_knn(session: Session, query: QueryVector, k: int = 10,
              filters: Filters | None = None, include_self: bool = False,
              use_cache: bool = True, store: VectorStore | None = None) -> pa.Table:
    """Exact top-k: over ``store`` when given, else the dataset's cached store (built on first
    use for local data, see ``mtquery.io.cache``), else streamed from the Parquet files
    (remote data, ``use_cache=False``, or the cache unavailable)."""
    from mtquery.io.cache import cached_store, discard_damaged
    from mtquery.query.filters import check_k
    from mtquery.vectors.integrity import Damaged

    check_k(k)
    filters = filters or Filters()
    from_cache = store is None and use_cache
    if from_cache:
        store = cached_store(session.dataset, session.dim)
    for attempt in range(2):
        if store is None:
            break
        try:
            return store_knn(session, store, query, k, filters, include_self)
        except Damaged as exc:
            if not from_cache or attempt:
                raise
            discard_damaged(store.path, exc)  # one notice, then built again from the files
            store = cached_store(session.dataset, session.dim)
    return stream_knn(session, query, k, filters, include_self)
