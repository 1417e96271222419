"""What to search with: a query vector from a point, a unique_id, several ids, a vector,
a text or an image.

``resolve_query`` is the one entry point every front end uses (CLI, Python API, web page);
text and image queries are embedded by ``mtquery.query.encode``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtquery.errors import DataError, UsageError
from mtquery.query.filters import BBox, check_lat, check_lon
from mtquery.query.search import run
from mtquery.query.session import Session
from mtquery.query.vector import QueryVector
from mtquery.vectors.store import unit_rows

QUERY_COLUMNS = "unique_id, embedding, grid_cell, timestamp, centre_lat, centre_lon"
MIN_PREFIX = 8
NPY_MAGIC = b"\x93NUMPY"


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
    # centre ranges first: the reader skips files and row groups by their statistics
    prefilter = "centre_lat BETWEEN ? AND ? AND centre_lon BETWEEN ? AND ?\n  AND " + prefilter
    return (
        f"SELECT {QUERY_COLUMNS}\n"
        "FROM embeddings\n"
        f"WHERE {prefilter}ST_Intersects(geometry, ST_Point(?, ?))\n"
        "ORDER BY acquired_at DESC NULLS LAST,\n"
        "  (centre_lat - ?) * (centre_lat - ?) + (centre_lon - ?) * (centre_lon - ?),\n"
        "  unique_id\n"
        "LIMIT 1"
    )


def point_query_params(lat: float, lon: float, has_bbox_column: bool) -> list:
    from mtquery.query.filters import point_window

    w = point_window(lat, lon)
    params: list = [*w.lat, *(w.lon or (-360.0, 360.0))]
    params += [lon, lon, lat, lat] if has_bbox_column else []
    return params + [lon, lat, lat, lat, lon, lon]


#: a dataset of points (mtquery.io.columns: lat/lon columns, point geometries): the point's
#: grid cell holds the fragment (the point nearest the query first)
POINTS_QUERY_SQL = (
    f"SELECT {QUERY_COLUMNS}\n"
    "FROM embeddings\n"
    "WHERE centre_lat BETWEEN ? AND ? AND centre_lon BETWEEN ? AND ?\n"
    "  AND (ST_Intersects(geometry, ST_Point(?, ?))\n"
    "       OR (ST_Dimension(geometry) = 0 AND grid_cell = ?))\n"
    "ORDER BY acquired_at DESC NULLS LAST,\n"
    "  (centre_lat - ?) * (centre_lat - ?) + (centre_lon - ?) * (centre_lon - ?),\n"
    "  unique_id\n"
    "LIMIT 1"
)


def query_from_point(session: Session, lat: float, lon: float) -> QueryVector:
    lat, lon = check_lat(lat), check_lon(lon)
    has_bbox = session.shape.has_bbox
    if session.shape.roles.standard:
        sql, params = point_query_sql(has_bbox), point_query_params(lat, lon, has_bbox)
    else:
        from mtquery.query.filters import centre_window
        from mtquery.standard.grid import cell_bounds, latlon_to_cell

        cell = str(latlon_to_cell(lat, lon)[0])
        x0, y0, x1, y1 = (float(v) for v in cell_bounds([cell])[0])
        reach = session.shape.reach_km  # None: footprints of unknown size, no window
        w = (centre_window(BBox(min(x0, lon), min(y0, lat), max(x1, lon), max(y1, lat)),
                           reach) if reach is not None else None)
        sql = POINTS_QUERY_SQL
        params = [*(w.lat if w else (-90.0, 90.0)), *(w.lon if w and w.lon else (-360.0, 360.0)),
                  lon, lat, cell, lat, lat, lon, lon]
    table = run(session, sql, params)
    if table.num_rows == 0:
        raise DataError(_nearest_hint(session, lat, lon))
    return _as_query(table.to_pylist()[0])


NEAREST_SQL = (
    "SELECT grid_cell, centre_lat, centre_lon,\n"
    "  ST_Distance_Sphere(ST_Point(centre_lat, centre_lon), ST_Point(?, ?)) / 1000 AS km\n"
    "FROM embeddings ORDER BY km LIMIT 1"
)


#: remote data: the hint looks this many degrees of latitude around the point (row groups
#: further away are skipped by their statistics instead of reading every centre)
REMOTE_HINT_DEG = 2.0
NEAREST_NEAR_SQL = NEAREST_SQL.replace("FROM embeddings", "FROM embeddings\n"
                                       "WHERE centre_lat BETWEEN ? AND ?")


def _nearest_hint(session: Session, lat: float, lon: float) -> str:
    msg = f"no fragment covers lat {lat}, lon {lon} in {session.dataset.name}"
    if session.dataset.remote:
        row = run(session, NEAREST_NEAR_SQL, [lat, lon, lat - REMOTE_HINT_DEG,
                                              lat + REMOTE_HINT_DEG]).to_pylist()
        if not row:
            return msg + f" (no fragment centre within {REMOTE_HINT_DEG:g} degrees of latitude)"
    else:
        row = run(session, NEAREST_SQL, [lat, lon]).to_pylist()
    if row:
        r = row[0]
        msg += (f"; the nearest fragment centre is {r['km']:.1f} km away (cell "
                f"{r['grid_cell']}, lat {r['centre_lat']:.4f}, lon {r['centre_lon']:.4f})")
    return msg


ID_SQL = f"SELECT {QUERY_COLUMNS}\nFROM embeddings WHERE unique_id = ? LIMIT 1"
ID_PREFIX_SQL = f"SELECT {QUERY_COLUMNS}\nFROM embeddings WHERE starts_with(unique_id, ?) LIMIT 2"


def query_from_id(session: Session, unique_id: str) -> QueryVector:
    """The fragment with this unique_id, or with this unique prefix (>= 8 characters, as the
    shortened ids of table output)."""
    uid = str(unique_id).strip().rstrip("…")
    table = run(session, ID_SQL, [uid])
    if table.num_rows == 0 and len(uid) >= MIN_PREFIX:
        table = run(session, ID_PREFIX_SQL, [uid])
        if table.num_rows > 1:
            raise UsageError(f"unique_id prefix {uid!r} is ambiguous; give more characters",
                             "id")
    if table.num_rows == 0:
        raise DataError(f"unknown unique_id {unique_id!r} in {session.dataset.name}")
    return _as_query(table.to_pylist()[0])


#: weight of the negatives' mean direction (Rocchio-style): query = mean(positives)
#: - NEGATIVE_WEIGHT x mean(negatives), each a mean of unit vectors, then normalised
NEGATIVE_WEIGHT = 0.5


def _unit_examples(session: Session, ids: Sequence[str], what: str) -> list[QueryVector]:
    found = [query_from_id(session, i) for i in ids]
    u = unit_rows(np.stack([q.vector for q in found]))
    bad = [q.unique_id for q, row in zip(found, u) if np.isnan(row).any()]
    if bad:
        raise DataError(f"{what} example {bad[0]} has a zero or invalid vector; leave it out",
                        what)
    return [QueryVector(vector=row, unique_id=q.unique_id) for q, row in zip(found, u)]


def query_from_ids(session: Session, ids: Sequence[str],
                   not_ids: Sequence[str] = ()) -> QueryVector:
    """Several examples: the mean of their unit vectors, minus NEGATIVE_WEIGHT times the mean
    of the negatives' (``not_ids``) unit vectors; every example is left out of the answer."""
    if not ids:
        raise UsageError("ids must name at least one unique_id", "ids")
    if len(ids) == 1 and not not_ids:
        return query_from_id(session, ids[0])
    pos = _unit_examples(session, ids, "ids")
    vec = np.mean([q.vector for q in pos], axis=0)
    neg = _unit_examples(session, not_ids, "not_ids") if not_ids else []
    if neg:
        vec = vec - NEGATIVE_WEIGHT * np.mean([q.vector for q in neg], axis=0)
    if not np.isfinite(vec).all() or not vec.any():
        raise DataError("the examples cancel out (the query vector is zero); give other "
                        "examples", "ids")
    return QueryVector(vector=vec.astype(np.float32),
                       source_ids=tuple(q.unique_id for q in pos + neg if q.unique_id))


def load_vector_file(path: str | Path) -> np.ndarray:
    """One vector from a ``.npy`` file (shape (dim,) or (1, dim))."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such vector file: {p}")
    try:
        with p.open("rb") as fh:
            head = fh.read(len(NPY_MAGIC))
        if head != NPY_MAGIC:
            raise DataError(f"{p} is not a .npy file (save one with numpy.save)")
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{p} is not a readable .npy vector file ({exc})") from exc
    return np.asarray(arr)


def query_from_vector(vector: np.ndarray | str | Path, dim: int) -> QueryVector:
    """A query from a vector (array or ``.npy`` file) of the dataset's dimension."""
    source = "" if isinstance(vector, np.ndarray) or not isinstance(vector, (str, Path)) else (
        f" in {vector}")
    arr = load_vector_file(vector) if isinstance(vector, (str, Path)) else np.asarray(vector)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"the vector{source} must be one numeric vector of shape ({dim},); "
                        f"got shape {arr.shape}")
    if arr.shape[0] != dim:
        raise DataError(f"query vector has {arr.shape[0]} values but the dataset's "
                        f"embeddings have {dim}")
    vec = arr.astype(np.float32)
    if not np.isfinite(vec).all() or not vec.any():
        raise DataError(f"the query vector{source} is zero or holds NaN / infinite values")
    return QueryVector(vector=vec)


def resolve_query(session: Session, *, lat: float | None = None, lon: float | None = None,
                  id: str | None = None, ids: Sequence[str] | None = None,
                  vector: np.ndarray | str | Path | None = None,
                  not_ids: Sequence[str] | None = None, text: str | None = None,
                  image: str | Path | None = None, model: str | None = None,
                  weights: str | None = None) -> QueryVector:
    """The query vector of exactly one of: a point (``lat`` + ``lon``), a unique_id (``id``,
    or a unique prefix of 8+ characters), several ids (``ids``: their mean direction, minus
    half the mean direction of ``not_ids``), a ``vector`` (array or ``.npy`` file), a
    ``text`` or an ``image`` file (embedded with the dataset's model, or ``model`` /
    ``weights``; see ``mtquery.query.encode``)."""
    if not_ids and ids is None and id is not None:
        ids, id = [id], None
    if not_ids and ids is None:
        raise UsageError("not_ids refine examples: give them with id or ids", "not_ids")
    given = [name for name, v in (("lat/lon", lat is not None or lon is not None),
                                  ("id", id is not None), ("ids", ids is not None),
                                  ("vector", vector is not None), ("text", text is not None),
                                  ("image", image is not None)) if v]
    if len(given) != 1:
        raise UsageError("give exactly one query: lat and lon, id, ids, vector, text or image"
                         + (f" (got {', '.join(given)})" if given else ""), "query")
    if text is not None or image is not None:
        from mtquery.query import encode

        if text is not None:
            return encode.query_from_text(session, text, model, weights)
        return encode.query_from_image(session, image, model, weights)
    if lat is not None or lon is not None:
        if lat is None or lon is None:
            raise UsageError("lat and lon go together, e.g. lat=37.65, lon=-75.6", "lat")
        return query_from_point(session, lat, lon)
    if id is not None:
        return query_from_id(session, id)
    if ids is not None:
        return query_from_ids(session, list(ids), list(not_ids or ()))
    return query_from_vector(vector, session.dim)
