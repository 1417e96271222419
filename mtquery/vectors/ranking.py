"""Ranking, the one way: unit vectors (zero / non-finite rows become NaN and never match),
top-k with ties to the lower row id, distances, and the columns and metadata of a kNN answer.
Every search path (exact scan, index, shards, eval, find) ranks with these."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError

#: the columns of a kNN answer besides rank and distance, with their Arrow types
RESULT_TYPES: dict[str, pa.DataType] = {
    "unique_id": pa.string(), "grid_cell": pa.string(), "timestamp": pa.string(),
    "product_id": pa.string(), "centre_lat": pa.float64(), "centre_lon": pa.float64(),
}
RESULT_COLUMNS = tuple(RESULT_TYPES)
RESULT_SCHEMA = pa.schema(list(RESULT_TYPES.items()))



def unit_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalised float32 rows; zero or non-finite vectors become NaN rows (never match)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x / norms
    out[~np.isfinite(out).all(axis=1)] = np.nan
    return out


def invalid_rows(x: np.ndarray) -> np.ndarray:
    """Boolean mask of rows that are zero or hold NaN / infinite values."""
    x = np.asarray(x)
    return ~np.isfinite(x).all(axis=1) | ~np.any(x != 0, axis=1)


def unit_query(vector: np.ndarray, dim: int) -> np.ndarray:
    """The query as a float32 unit vector of ``dim`` values; DataError when it has another
    length or is zero / not finite (cosine distance is undefined)."""
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if q.shape[0] != dim:
        raise DataError(f"query vector has {q.shape[0]} values, the embeddings are {dim}-d")
    qn = float(np.linalg.norm(q))
    if qn == 0 or not np.isfinite(qn):
        raise DataError("the query vector is zero or not finite; cosine distance is undefined")
    return q / np.float32(qn)


def top_k(scores: np.ndarray, k: int, ids: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """(positions, scores) of the k highest finite scores, best first; ties go to the lower
    id (``ids``, default the position itself). The one top-k of every search path."""
    scores = np.asarray(scores)
    ok = np.flatnonzero(np.isfinite(scores) & (scores > -np.inf))
    if ok.size != scores.size:
        pos, sc = ok, scores[ok]
    else:
        pos, sc = np.arange(scores.size), scores
    key = pos if ids is None else np.asarray(ids)[pos]
    if k <= 0 or pos.size == 0:
        return np.empty(0, np.int64), np.empty(0, scores.dtype)
    if pos.size > k:
        part = np.argpartition(-sc, k - 1)[:k]
        kth = sc[part].min()
        # every row tied with the k-th score competes, so ties resolve by id, not by chance
        part = np.flatnonzero(sc >= kth)
        pos, sc, key = pos[part], sc[part], key[part]
    order = np.lexsort((key, -sc.astype(np.float64)))[:k]
    return pos[order].astype(np.int64), sc[order]


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a (queries, candidates) score matrix: (columns, scores), each
    (queries, k), best first, ties to the lower column. Non-finite scores rank last."""
    s = scores if np.isfinite(scores).all() else np.where(np.isfinite(scores), scores, -np.inf)
    n = s.shape[1]
    k = min(k, n)
    if k < n:
        # k + 1 best: a tie between the k-th and the (k+1)-th decides by column, so only the
        # rows where they are equal need a full stable sort
        part = np.argpartition(s, n - k - 1, axis=1)[:, n - k - 1:]  # no negated copy
        vals = np.take_along_axis(s, part, 1)
        order = np.lexsort((part, -vals.astype(np.float64)), axis=1)
        part = np.take_along_axis(part, order, 1)
        vals = np.take_along_axis(vals, order, 1)
        tied = np.flatnonzero(vals[:, k - 1] == vals[:, k])
        if tied.size:
            part[tied, :k] = np.argsort(-s[tied], axis=1, kind="stable")[:, :k]
            vals[tied, :k] = np.take_along_axis(s[tied], part[tied, :k], 1)
        return part[:, :k], vals[:, :k]
    part = np.broadcast_to(np.arange(n), s.shape)
    order = np.lexsort((part, -s.astype(np.float64)), axis=1)
    return np.take_along_axis(part, order, 1), np.take_along_axis(s, order, 1)


def distances(scores: np.ndarray) -> np.ndarray:
    """Cosine distance (1 - cosine similarity) in [0, 2], float64."""
    return np.clip(1.0 - np.asarray(scores, dtype=np.float64), 0.0, 2.0)


def empty_rows() -> pa.Table:
    return RESULT_SCHEMA.empty_table()


def result_table(scores: np.ndarray, rows: pa.Table | None) -> pa.Table:
    """``rank``, RESULT_COLUMNS, ``distance``: the shape of every kNN answer."""
    rows = empty_rows() if rows is None else rows.select(list(RESULT_COLUMNS))
    dist = distances(scores)
    out = rows.add_column(0, "rank", pa.array(np.arange(1, len(dist) + 1), pa.int64()))
    return out.append_column("distance", pa.array(dist, pa.float64()))


def timestamp_text(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A typed timestamp column as the text the SQL views give it: ISO 8601 with
    microseconds, in UTC with a ``Z`` when it carries a time zone."""
    import pyarrow.compute as pc

    if pa.types.is_integer(col.type):  # epochs, as the SQL views read them (s, ms, us, ns)
        col = _epoch_micros(col).cast(pa.timestamp("us", tz="UTC"))
    if not pa.types.is_timestamp(col.type):
        return col
    tz = col.type.tz
    col = col.cast(pa.timestamp("us", tz="UTC" if tz else None))
    return pc.strftime(col, format="%Y-%m-%dT%H:%M:%S" + ("Z" if tz else ""))


def _epoch_micros(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Integer epochs as microseconds, the unit read off the magnitude (the views' rule,
    ``mtquery.io.derive.EPOCH_UNITS``)."""
    import pyarrow.compute as pc

    v = col.cast(pa.int64())
    mag = pc.abs(v)
    return pc.if_else(pc.less(mag, 10**11), pc.multiply(v, 10**6), pc.if_else(
        pc.less(mag, 10**14), pc.multiply(v, 10**3), pc.if_else(
            pc.less(mag, 10**17), v, pc.divide(v, 10**3))))


def cast_rows(t: pa.Table) -> pa.Table:
    """Result columns with their standard types (missing optional ones as nulls)."""
    cols = {}
    for name, typ in RESULT_TYPES.items():
        cols[name] = (timestamp_text(t.column(name)).cast(typ) if name in t.column_names
                      else pa.nulls(t.num_rows, typ))
    return pa.table(cols, schema=RESULT_SCHEMA)


SKIPPED_KEY = b"mtquery:skipped_invalid"


def with_skipped(table: pa.Table, skipped: int) -> pa.Table:
    """Record in the table's metadata how many zero / invalid vectors the search skipped."""
    meta = dict(table.schema.metadata or {})
    meta[SKIPPED_KEY] = str(int(skipped)).encode()
    return table.replace_schema_metadata(meta)


def skipped_of(table: pa.Table) -> int:
    """How many zero / invalid vectors a kNN answer skipped (0 when not recorded)."""
    return int((table.schema.metadata or {}).get(SKIPPED_KEY, b"0"))
