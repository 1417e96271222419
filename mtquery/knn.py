"""Exact cosine nearest neighbours over a dataset, with the query taken from a point, a
unique_id or a vector file. Candidates stream out of DuckDB as Arrow batches (filters pushed
down into the Parquet scan) and are scored with one float32 matrix-vector product per batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from mtquery.duck import describe_error
from mtquery.engine import Session
from mtquery.errors import DataError, UsageError
from mtquery.query import (
    RESULT_COLUMNS,
    Filters,
    _conversion_hint,
    filtered_locations,
    run,
    where_sql,
)
from mtquery.vectorcache import VectorCache, open_cache

BATCH_ROWS = 65_536


@dataclass(frozen=True)
class QueryVector:
    """The query: its vector and, when it came from the dataset, the fragment it came from."""

    vector: np.ndarray  # (dim,) float32
    unique_id: str | None = None
    grid_cell: str | None = None
    timestamp: str | None = None
    centre_lat: float | None = None
    centre_lon: float | None = None


def _as_query(row: dict) -> QueryVector:
    return QueryVector(
        vector=np.asarray(row["embedding"], dtype=np.float32),
        unique_id=row["unique_id"], grid_cell=row["grid_cell"], timestamp=row["timestamp"],
        centre_lat=row["centre_lat"], centre_lon=row["centre_lon"],
    )


def point_query_sql(has_bbox_column: bool) -> str:
    """Fragment whose geometry holds the point: latest acquisition first, ties broken by the
    nearest centre. Parameters: see ``query_from_point``."""
    prefilter = ("bbox.xmin <= ? AND bbox.xmax >= ? AND bbox.ymin <= ? AND bbox.ymax >= ?\n"
                 "  AND " if has_bbox_column else "")
    return (
        "SELECT unique_id, embedding, grid_cell, timestamp, centre_lat, centre_lon\n"
        "FROM embeddings\n"
        f"WHERE {prefilter}ST_Intersects(geometry, ST_Point(?, ?))\n"
        "ORDER BY acquired_at DESC NULLS LAST,\n"
        "  (centre_lat - ?) * (centre_lat - ?) + (centre_lon - ?) * (centre_lon - ?),\n"
        "  unique_id\n"
        "LIMIT 1"
    )


def query_from_point(session: Session, lat: float, lon: float) -> QueryVector:
    has_bbox = session.shape.has_bbox
    params: list = [lon, lon, lat, lat] if has_bbox else []
    params += [lon, lat, lat, lat, lon, lon]
    table = run(session, point_query_sql(has_bbox), params)
    if table.num_rows == 0:
        raise DataError(_nearest_hint(session, lat, lon))
    return _as_query(table.to_pylist()[0])


NEAREST_SQL = (
    "SELECT grid_cell, centre_lat, centre_lon,\n"
    "  ST_Distance_Sphere(ST_Point(centre_lat, centre_lon), ST_Point(?, ?)) / 1000 AS km\n"
    "FROM embeddings ORDER BY km LIMIT 1"
)


def _nearest_hint(session: Session, lat: float, lon: float) -> str:
    msg = f"no fragment covers lat {lat}, lon {lon} in {session.dataset.name}"
    row = run(session, NEAREST_SQL, [lat, lon]).to_pylist()
    if row:
        r = row[0]
        msg += (f"; the nearest fragment centre is {r['km']:.1f} km away (cell "
                f"{r['grid_cell']}, lat {r['centre_lat']:.4f}, lon {r['centre_lon']:.4f})")
    return msg


ID_SQL = ("SELECT unique_id, embedding, grid_cell, timestamp, centre_lat, centre_lon\n"
          "FROM embeddings WHERE unique_id = ? LIMIT 1")
ID_PREFIX_SQL = ("SELECT unique_id, embedding, grid_cell, timestamp, centre_lat, centre_lon\n"
                 "FROM embeddings WHERE starts_with(unique_id, ?) LIMIT 2")
MIN_PREFIX = 8


def query_from_id(session: Session, unique_id: str) -> QueryVector:
    """The fragment with this unique_id, or with this unique prefix (>= 8 characters, as the
    shortened ids of table output)."""
    uid = unique_id.strip().rstrip("…")
    table = run(session, ID_SQL, [uid])
    if table.num_rows == 0 and len(uid) >= MIN_PREFIX:
        table = run(session, ID_PREFIX_SQL, [uid])
        if table.num_rows > 1:
            raise UsageError(f"unique_id prefix {uid!r} is ambiguous; give more characters")
    if table.num_rows == 0:
        raise DataError(f"unknown unique_id {unique_id!r} in {session.dataset.name}")
    return _as_query(table.to_pylist()[0])


def query_from_file(path: str | Path, dim: int) -> QueryVector:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such vector file: {p}")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"not a .npy vector file: {p} ({exc})") from exc
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{p} must hold one numeric vector of shape ({dim},); got {arr.shape}")
    if arr.shape[0] != dim:
        raise DataError(f"query vector has {arr.shape[0]} values but the dataset's "
                        f"embeddings have {dim}")
    vec = arr.astype(np.float32)
    if not np.isfinite(vec).all():
        raise DataError(f"query vector in {p} holds NaN or infinite values")
    return QueryVector(vector=vec)


def scan_sql(filters: Filters, has_bbox_column: bool, exclude_id: bool) -> tuple[str, list]:
    """The candidate scan: result columns and the vector for every fragment passing filters."""
    where, params = where_sql(filters, has_bbox_column)
    if exclude_id:
        where = (where + "\n  AND " if where else "WHERE ") + "unique_id <> ?"
    cols = ", ".join(RESULT_COLUMNS)
    return f"SELECT {cols}, embedding\nFROM embeddings\n{where}".rstrip(), params


class TopK:
    """Running top-k of (score, row) over batches; ties broken by unique_id."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.scores = np.empty(0, dtype=np.float32)
        self.rows: list[pa.Table] = []

    def add(self, scores: np.ndarray, rows: pa.Table) -> None:
        keep = np.isfinite(scores)
        if len(scores) > self.k:
            idx = np.argpartition(-np.where(keep, scores, -np.inf), self.k - 1)[: self.k]
            idx = idx[keep[idx]]
        else:
            idx = np.nonzero(keep)[0]
        if idx.size == 0:
            return
        self.scores = np.concatenate([self.scores, scores[idx]])
        self.rows.append(rows.take(pa.array(idx)))
        if len(self.scores) > 4 * self.k:
            self._shrink()

    def _shrink(self) -> None:
        table = pa.concat_tables(self.rows)
        order = self._order(table)[: self.k]
        self.scores = self.scores[order]
        self.rows = [table.take(pa.array(order))]

    def _order(self, table: pa.Table) -> np.ndarray:
        ids = np.asarray(table.column("unique_id").to_pylist(), dtype=object)
        return np.lexsort((ids, -self.scores.astype(np.float64)))

    def result(self) -> tuple[np.ndarray, pa.Table | None]:
        if not self.rows:
            return self.scores, None
        self._shrink()
        return self.scores, self.rows[0]


def knn(session: Session, query: QueryVector, k: int = 10, filters: Filters | None = None,
        include_self: bool = False, exact: bool = False,
        index: str | Path | None = None) -> pa.Table:
    """Cosine nearest neighbours: through the dataset's ANN index (``mtquery index build``, or
    the index directory ``index``) with exact rerank when there is one, else the exact scan.
    ``exact=True`` always scans. Same columns either way."""
    if exact and index is not None:
        raise UsageError("exact=True and an index exclude each other")
    if not exact:
        from mtquery.ann_search import indexed_knn, open_for

        ann = open_for(session, index)
        if ann is not None:
            return indexed_knn(session, query, k, filters, include_self, ann)
    return exact_knn(session, query, k, filters, include_self)


def exact_knn(session: Session, query: QueryVector, k: int = 10,
              filters: Filters | None = None, include_self: bool = False,
              use_cache: bool = True) -> pa.Table:
    """k nearest fragments by cosine similarity; columns rank, RESULT_COLUMNS..., distance.

    Local datasets are scanned through the memory-mapped vector cache (built on first use,
    see ``mtquery.vectorcache``); remote ones, or with ``use_cache=False``, stream from the
    Parquet files batch by batch."""
    if k <= 0:
        raise UsageError(f"k must be a positive number of neighbours, e.g. 10 (got {k})")
    filters = filters or Filters()
    q = _unit_query(query, session.dim)
    exclude = query.unique_id is not None and not include_self
    cache = open_cache(session.dataset, session.dim) if use_cache else None
    if cache is not None:
        return _cached_knn(session, cache, q, k, filters, query.unique_id if exclude else None)
    sql, params = scan_sql(filters, session.shape.has_bbox, exclude)
    if exclude:
        params = [*params, query.unique_id]
    top = TopK(k)
    try:
        reader = session.con.execute(sql, params).to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            top.add(_cosine(batch.column(batch.num_columns - 1), q, session.dim),
                    pa.Table.from_batches([batch]).drop_columns(["embedding"]))
    except duckdb.ConversionException as exc:
        raise DataError(_conversion_hint(exc)) from exc
    except duckdb.Error as exc:
        raise DataError(describe_error(exc)) from exc
    scores, rows = top.result()
    return _result_table(scores, rows)


def _unit_query(query: QueryVector, dim: int) -> np.ndarray:
    q = np.asarray(query.vector, dtype=np.float32)
    if q.shape != (dim,):
        raise DataError(f"query vector has {q.shape[-1]} values, the dataset {dim}")
    qn = float(np.linalg.norm(q))
    if qn == 0 or not np.isfinite(qn):
        raise DataError("the query vector is zero or not finite; cosine distance is undefined")
    return q / np.float32(qn)


SCAN_CHUNK = 262_144


def candidate_rows(session: Session, cache: VectorCache, filters: Filters) -> np.ndarray:
    """Global rows (cache order) of the fragments passing the filters."""
    t = filtered_locations(session, filters)
    files = t.column("source_file").to_pylist()
    return np.sort(cache.global_rows(files, t.column("source_row").to_numpy()))


def cosine_scores(cache: VectorCache, q: np.ndarray,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity of every (or the given) cached row with a unit query, chunked so
    memory stays bounded; NaN rows (zero vectors) score -inf."""
    x = cache.matrix()
    n = cache.n if rows is None else len(rows)
    out = np.empty(n, dtype=np.float32)
    for lo in range(0, n, SCAN_CHUNK):
        hi = min(n, lo + SCAN_CHUNK)
        block = x[lo:hi] if rows is None else x[rows[lo:hi]]
        out[lo:hi] = block @ q
    out[~np.isfinite(out)] = -np.inf
    return out


def _cached_knn(session: Session, cache: VectorCache, q: np.ndarray, k: int,
                filters: Filters, exclude_id: str | None) -> pa.Table:
    rows = None if filters.empty else candidate_rows(session, cache, filters)
    scores = cosine_scores(cache, q, rows)
    want = min(len(scores), k + (1 if exclude_id else 0))
    if want == 0:
        return _result_table(np.empty(0, np.float32), None)
    top = np.argpartition(-scores, want - 1)[:want] if want < len(scores) else np.arange(
        len(scores))
    top = top[np.isfinite(scores[top])]
    idx = top if rows is None else rows[top]
    meta = cache.rows(idx).select(list(RESULT_COLUMNS))
    sc = scores[top]
    if exclude_id is not None:
        keep = np.asarray(meta.column("unique_id").to_pylist(), dtype=object) != exclude_id
        meta, sc = meta.filter(pa.array(keep)), sc[keep]
    ids = np.asarray(meta.column("unique_id").to_pylist(), dtype=object)
    order = np.lexsort((ids, -sc.astype(np.float64)))[:k]
    return _result_table(sc[order], meta.take(pa.array(order, pa.int64())))


def _cosine(column: pa.Array, q: np.ndarray, dim: int) -> np.ndarray:
    if column.null_count:
        valid = np.asarray(column.is_valid())
        out = np.full(len(column), -np.inf, dtype=np.float32)
        filled = column.filter(pa.array(valid))
        out[valid] = _cosine(filled, q, dim)
        return out
    x = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    dots = x @ q
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = dots / norms
    scores[~np.isfinite(scores)] = -np.inf  # zero or non-finite vectors never match
    return scores


def _result_table(scores: np.ndarray, rows: pa.Table | None) -> pa.Table:
    if rows is None:
        empty = {c: pa.array([], pa.string()) for c in RESULT_COLUMNS}
        empty["centre_lat"] = pa.array([], pa.float64())
        empty["centre_lon"] = pa.array([], pa.float64())
        return pa.table({"rank": pa.array([], pa.int64()), **empty,
                         "distance": pa.array([], pa.float64())})
    dist = np.clip(1.0 - scores.astype(np.float64), 0.0, 2.0)
    out = rows.select(list(RESULT_COLUMNS))
    out = out.add_column(0, "rank", pa.array(np.arange(1, len(dist) + 1), pa.int64()))
    return out.append_column("distance", pa.array(dist, pa.float64()))
