"""Change over time: how far a place's embedding moved between two periods.

Per grid cell (or, ``per_fragment``, per fragment position in the cell: ``grid_cell``,
``utm_crs``, ``pixel_bbox``), the unit vectors of the fragments acquired in ``before`` are
averaged, the same for ``after``, and the distance is 1 - cosine similarity of the two means.
Places seen in only one period are left out and counted; zero / invalid vectors are skipped.
The same computation in SQL is the table macro ``cell_change`` (sql/50_change.sql).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.query.filters import (
    FRAGMENT_REACH_KM,
    BBox,
    Filters,
    TimeRange,
    parse_bbox,
    parse_time_range,
    where_sql,
)
from mtquery.query.search import check_times, run
from mtquery.query.session import Session
from mtquery.vectors.store import unit_rows

log = logging.getLogger("mtquery")

PERIOD_EXAMPLE = "2020-01-01..2020-12-31"


@dataclass(frozen=True)
class Period:
    """An inclusive date window ``START..END`` (UTC)."""

    text: str
    time: TimeRange


def parse_period(text: str, what: str = "period") -> Period:
    """``YYYY-MM-DD..YYYY-MM-DD`` (both inclusive)."""
    parts = str(text).split("..")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise UsageError(f"{what} must be START..END, e.g. {PERIOD_EXAMPLE} (got {text!r})",
                         what)
    start, end = (p.strip() for p in parts)
    try:
        return Period(str(text), parse_time_range(start, end))
    except UsageError as exc:
        raise UsageError(f"{what}: {exc}", what) from None


def _key_sql(per_fragment: bool) -> str:
    return ("grid_cell, utm_crs, CAST(pixel_bbox AS VARCHAR) AS position" if per_fragment
            else "grid_cell")


def change_sql(before: Period, after: Period, bbox: BBox | None, has_bbox_column: bool,
               per_fragment: bool = False, reach_km: float | None = FRAGMENT_REACH_KM
               ) -> tuple[str, list]:
    """Rows of either period inside ``bbox``: place key, period (0 before, 1 after), time,
    centre, vector (and the footprint per fragment)."""
    where, params = where_sql(Filters(bbox=bbox), has_bbox_column, reach_km)
    periods = ("CASE WHEN acquired_at >= ? AND acquired_at < ? THEN 0\n"
               "     WHEN acquired_at >= ? AND acquired_at < ? THEN 1 END")
    times = [before.time.start, before.time.end, after.time.start, after.time.end]
    geom = ", ST_AsWKB(geometry) AS geometry" if per_fragment else ""
    sql = (f"SELECT * FROM (\n  SELECT {_key_sql(per_fragment)}, {periods} AS period,\n"
           f"    acquired_at, centre_lat, centre_lon, embedding{geom}\n"
           f"  FROM embeddings\n  {where}\n) WHERE period IS NOT NULL")
    return sql, [*times, *params]


def _group_means(keys: np.ndarray, vec: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                           np.ndarray]:
    """Unique keys, their mean unit vectors and counts (invalid vectors left out)."""
    u = unit_rows(vec)
    ok = ~np.isnan(u[:, 0]) if len(u) else np.zeros(0, bool)
    uniq, inv = np.unique(keys[ok], return_inverse=True)
    sums = np.zeros((len(uniq), vec.shape[1]), np.float64)
    np.add.at(sums, inv, u[ok])
    counts = np.bincount(inv, minlength=len(uniq))
    return uniq, sums / np.maximum(counts, 1)[:, None], counts


def change(session: Session, before: str | Period, after: str | Period,
           bbox: str | BBox | None = None, per_fragment: bool = False,
           limit: int | None = None) -> pa.Table:
    """Places ranked by how far their mean embedding moved from ``before`` to ``after``."""
    from mtquery.standard.schema import embedding_matrix

    b = before if isinstance(before, Period) else parse_period(before, "before")
    a = after if isinstance(after, Period) else parse_period(after, "after")
    if limit is not None and limit <= 0:
        raise UsageError(f"limit must be positive, e.g. 100 (got {limit})", "limit")
    sql, params = change_sql(b, a, parse_bbox(bbox), session.shape.has_bbox, per_fragment,
                             session.shape.reach_km)
    check_times(session)  # the periods are time windows: unreadable times are an error
    t = run(session, sql, params)
    if t.num_rows == 0:
        raise DataError(f"no fragment acquired in before ({b.text}) or after ({a.text}) "
                        "in the region")
    period = t.column("period").to_numpy()
    for name, p, value in (("before", 0, b.text), ("after", 1, a.text)):
        if not (period == p).any():
            raise DataError(f"{name} ({value}) matches no fragment in the region", name)
    keys = _keys(t, per_fragment)
    vec = embedding_matrix(t.column("embedding"))
    kb, mb, nb = _group_means(keys[period == 0], vec[period == 0])
    ka, ma, na = _group_means(keys[period == 1], vec[period == 1])
    both, ib, ia = np.intersect1d(kb, ka, return_indices=True)
    only = len(kb) + len(ka) - 2 * len(both)
    if only:
        log.warning("%d place(s) seen in only one period left out", only)
    cos = np.einsum("ij,ij->i", mb[ib], ma[ia]) / (
        np.linalg.norm(mb[ib], axis=1) * np.linalg.norm(ma[ia], axis=1))
    dist = np.clip(1.0 - cos, 0.0, 2.0)
    order = np.lexsort((both, -dist))[:limit]
    return _result(t, keys, period, both[order], dist[order], nb[ib][order], na[ia][order],
                   per_fragment)


def _keys(t: pa.Table, per_fragment: bool) -> np.ndarray:
    cells = np.asarray(t.column("grid_cell").to_pylist(), dtype=object)
    if not per_fragment:
        return cells.astype(str)
    crs = np.asarray(t.column("utm_crs").to_pylist(), dtype=object).astype(str)
    pos = np.asarray(t.column("position").to_pylist(), dtype=object).astype(str)
    return np.char.add(np.char.add(np.char.add(cells.astype(str), "|"), crs),
                       np.char.add("|", pos))


def _result(t: pa.Table, keys: np.ndarray, period: np.ndarray, places: np.ndarray,
            dist: np.ndarray, nb: np.ndarray, na: np.ndarray, per_fragment: bool) -> pa.Table:
    import shapely

    from mtquery.standard.grid import cell_bounds

    when = t.column("acquired_at").to_pylist()
    lat = t.column("centre_lat").to_numpy()
    lon = t.column("centre_lon").to_numpy()
    index = {k: i for i, k in enumerate(places.tolist())}
    span: dict[tuple[int, int], list[dt.datetime]] = {}
    lat_sum, lon_sum, count = (np.zeros(len(places)) for _ in range(3))
    geoms: list[bytes | None] = [None] * len(places)
    for row, key in enumerate(keys.tolist()):
        i = index.get(key)
        if i is None:
            continue
        span.setdefault((i, int(period[row])), []).append(when[row])
        lat_sum[i] += lat[row]
        lon_sum[i] += lon[row]
        count[i] += 1
        if per_fragment and geoms[i] is None:
            geoms[i] = t.column("geometry")[row].as_py()
    cells = [k.split("|")[0] for k in places.tolist()]
    if not per_fragment and cells:
        boxes = np.asarray(cell_bounds(cells))
        geoms = shapely.to_wkb(shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2],
                                           boxes[:, 3])).tolist()
    cols = {"grid_cell": pa.array(cells, pa.string())}
    if per_fragment:
        cols["position"] = pa.array([k.split("|", 1)[1] for k in places.tolist()], pa.string())
    first_last = {}
    for p, name in ((0, "before"), (1, "after")):
        first_last[f"{name}_first"] = [min(span[(i, p)]) for i in range(len(places))]
        first_last[f"{name}_last"] = [max(span[(i, p)]) for i in range(len(places))]
    cols.update({
        "distance": pa.array(dist, pa.float64()),
        "before_n": pa.array(nb, pa.int64()), "after_n": pa.array(na, pa.int64()),
        **{k: pa.array(v, pa.timestamp("us")) for k, v in first_last.items()},
        "centre_lat": pa.array(lat_sum / np.maximum(count, 1), pa.float64()),
        "centre_lon": pa.array(lon_sum / np.maximum(count, 1), pa.float64()),
        "geometry": pa.array(geoms, pa.binary()),
    })
    return pa.table(cols)
