"""Labelled examples for ``classify``: a label file (GeoJSON / GeoParquet / CSV of points or
polygons, or a table with ``unique_id``) joined to the dataset's fragments with the join
``eval`` uses (``mtquery.eval.labels``), or lists of positive / negative unique_ids; plus
random background negatives drawn from the region. Each labelled fragment gets its unit
vector (from the vector store when there is one, else read through DuckDB)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.query.filters import Filters, where_sql
from mtquery.query.search import run, sql_error
from mtquery.query.session import Session
from mtquery.vectors.store import unit_rows

POSITIVE = {"1", "1.0", "true", "t", "yes", "y", "positive", "pos", "+", "+1"}
NEGATIVE = {"0", "0.0", "-1", "false", "f", "no", "n", "negative", "neg", "-", "background"}
GEOMETRY_COLUMNS = ("geometry", "geom", "wkt", "wkb_geometry")
POINT_COLUMNS = (("lon", "lat"), ("longitude", "latitude"), ("x", "y"))
LOCATE_COLUMNS = "unique_id, source_file, source_row, centre_lat, centre_lon"


@dataclass
class Labels:
    """Labelled fragments: ids, class (1 positive, 0 negative), centres and unit vectors."""

    unique_id: np.ndarray
    y: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    vectors: np.ndarray
    info: dict = field(default_factory=dict)
    background: np.ndarray | None = None  # bool: drawn at random from the region

    def __post_init__(self) -> None:
        if self.background is None:
            self.background = np.zeros(len(self.y), bool)

    def subset(self, keep: np.ndarray) -> Labels:
        return Labels(self.unique_id[keep], self.y[keep], self.lat[keep], self.lon[keep],
                      self.vectors[keep], self.info, self.background[keep])

    @property
    def positives(self) -> int:
        return int(self.y.sum())

    @property
    def negatives(self) -> int:
        return int(len(self.y) - self.y.sum())


def label_value(value: str, positive_label: str | None) -> int | None:
    """1 / 0 for a positive / negative label, None when it is neither."""
    if positive_label is not None:
        return int(str(value) == str(positive_label))
    v = str(value).strip().lower()
    return 1 if v in POSITIVE else 0 if v in NEGATIVE else None


def _join_kind(cols: dict[str, str], path: Path) -> str:
    if "unique_id" in cols:
        return "unique_id"
    if any(c in cols for c in GEOMETRY_COLUMNS) or any(a in cols and b in cols
                                                       for a, b in POINT_COLUMNS):
        return "spatial"
    raise UsageError(f"label file {path.name} has no geometry (a geometry, geom or wkt column, "
                     f"or lon/lat columns) and no unique_id column (columns: {', '.join(cols)})",
                     "labels")


def _day_window(filters: Filters) -> tuple[str | None, str | None]:
    """The days of the time window, inclusive, as the label join takes them."""
    import datetime as dt

    t = filters.time
    start = t.start.date().isoformat() if t.start is not None else None
    end = ((t.end - dt.timedelta(microseconds=1)).date().isoformat()
           if t.end is not None and t.end.year > 1 else None)
    return start, end


def same_crs(session: Session, table: str) -> None:
    """Give the label geometries the CRS the dataset's geometries carry (none, or e.g.
    OGC:CRS84 from GeoParquet metadata): DuckDB refuses to intersect geometries whose CRS
    labels differ, and a GeoJSON says EPSG:4326 (the same lon/lat coordinates)."""
    import re

    typ = run(session, "SELECT typeof(geometry) AS t FROM embeddings LIMIT 1").column(0)
    m = re.match(r"GEOMETRY\('([^']*)'\)", str(typ[0].as_py()) if len(typ) else "")
    expr = "ST_SetCRS(geom, ?)" if m else "CAST(geom AS GEOMETRY)"
    try:
        session.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * REPLACE "
                            f"({expr} AS geom) FROM {table}", [m.group(1)] if m else [])
    except duckdb.Error as exc:
        raise sql_error(exc) from exc


def read_label_file(session: Session, path: str | Path, label_column: str = "label",
                    positive_label: str | None = None,
                    filters: Filters | None = None) -> tuple[pa.Table, dict]:
    """(fragments with ``y``, provenance) of a label file: points and polygons by a spatial
    join, ids by unique_id; fragments acquired in the window of ``filters`` (any place)."""
    from mtquery.eval.labels import LABEL_TABLE, describe_labels, join_sql, load_label_table

    p = Path(path)
    if not p.is_file():
        raise DataError(f"label file not found: {p}", "labels")
    cols = describe_labels(session.con, p)
    if label_column not in cols:
        raise UsageError(f"label column {label_column!r} is not a column of {p.name} "
                         f"(columns: {', '.join(cols)})", "label_column")
    join = _join_kind(cols, p)
    info = load_label_table(session.con, p, label_column, join)
    if join == "spatial":
        same_crs(session, LABEL_TABLE)
    values = [r[0] for r in session.con.execute(
        f"SELECT DISTINCT label FROM {LABEL_TABLE} ORDER BY label").fetchall()]
    if positive_label is not None and str(positive_label) not in values:
        raise UsageError(f"positive_label {positive_label!r} is not a value of column "
                         f"{label_column!r} (values: {', '.join(values[:8])})", "positive_label")
    unknown = [v for v in values if label_value(v, positive_label) is None]
    if unknown:
        raise UsageError(f"column {label_column!r} holds {', '.join(values[:6])}"
                         f"{' ...' if len(values) > 6 else ''}: name the positive class with "
                         "positive_label (or use 1/0, true/false, positive/negative)",
                         "positive_label")
    start, end = _day_window(filters or Filters())
    sql, params = join_sql(join, False, None, start, end, False)
    joined = run(session, sql, params)
    if joined.num_rows == 0:
        raise DataError(f"0 of {info['label_rows']} labels fall on fragments of "
                        f"{session.dataset.name}" + (f" acquired {start or '...'} to "
                                                     f"{end or '...'}" if start or end else ""),
                        "labels")
    ys, keep = [], []
    for labs in joined.column("labels").to_pylist():
        classes = {label_value(v, positive_label) for v in labs}
        keep.append(len(classes) == 1)
        ys.append(classes.pop() if len(classes) == 1 else 0)
    conflicts = len(keep) - int(sum(keep))
    table = pa.table({"unique_id": joined.column("unique_id"),
                      "source_file": joined.column("source_file"),
                      "source_row": joined.column("source_row"),
                      "centre_lat": joined.column("lat"), "centre_lon": joined.column("lon"),
                      "y": pa.array(ys, pa.int8())}).filter(pa.array(keep))
    info.update({"join": join, "positive_label": positive_label,
                 "conflicting_fragments": conflicts})
    return table, info


def _find_ids(session: Session, ids: Sequence[str], what: str) -> pa.Table:
    """Fragments with these unique_ids (or unique prefixes of 8+ characters)."""
    from mtquery.query.resolve import query_from_id

    wanted = [str(i).strip().rstrip("…") for i in ids]
    found = run(session, f"SELECT {LOCATE_COLUMNS} FROM embeddings\n"
                "WHERE unique_id IN (SELECT unnest(CAST(? AS VARCHAR[])))", [wanted])
    have = set(found.column("unique_id").to_pylist())
    missing = [i for i in wanted if i not in have]
    extra = []
    for uid in missing:  # a prefix from table output: resolved one by one
        full = query_from_id(session, uid).unique_id
        extra.append(run(session, f"SELECT {LOCATE_COLUMNS} FROM embeddings WHERE "
                         "unique_id = ?", [full]))
    table = pa.concat_tables([found, *extra]) if extra else found
    if table.num_rows == 0:
        raise DataError(f"none of the {what} ids is in {session.dataset.name}", what)
    return table


def id_labels(session: Session, positives: Sequence[str],
              negatives: Sequence[str]) -> tuple[pa.Table, dict]:
    """Fragments named as positive / negative examples (every acquisition of the id)."""
    both = set(map(str, positives)) & set(map(str, negatives))
    if both:
        raise UsageError(f"unique_id {sorted(both)[0]} is both a positive and a negative",
                         "negatives")
    parts = []
    for ids, y, what in ((positives, 1, "positives"), (negatives, 0, "negatives")):
        if ids:
            t = _find_ids(session, list(ids), what)
            parts.append(t.append_column("y", pa.array(np.full(t.num_rows, y), pa.int8())))
    table = pa.concat_tables(parts)
    return table, {"ids": {"positives": len(positives), "negatives": len(negatives)}}


def background(session: Session, filters: Filters, count: int, exclude: set[str],
               seed: int = 0) -> pa.Table:
    """``count`` fragments drawn at random (seeded) from the region, none of ``exclude``;
    labelled negative."""
    where, params = where_sql(filters, session.shape.has_bbox, session.shape.reach_km)
    sql = (f"SELECT {LOCATE_COLUMNS} FROM embeddings\n{where}\n"
           "ORDER BY hash(unique_id, ?) LIMIT ?").replace("\n\n", "\n")
    t = run(session, sql, [*params, int(seed), int(count) + len(exclude)])
    if exclude and t.num_rows:
        ids = np.asarray(t.column("unique_id").to_pylist(), dtype=object)
        t = t.filter(pa.array(~np.isin(ids, np.asarray(sorted(exclude), dtype=object))))
    t = t.slice(0, count)
    t = t.append_column("y", pa.array(np.zeros(t.num_rows), pa.int8()))
    return t.append_column("background", pa.array(np.ones(t.num_rows, bool)))


def attach_vectors(session: Session, table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """(rows with a valid vector, their unit vectors) for located fragments."""
    from mtquery.find.stream import find_store

    if table.num_rows == 0:
        return table, np.zeros((0, session.dim), np.float32)
    store = find_store(session)
    if store is not None:
        ids = store.rowmap.global_rows(table.column("source_file").to_numpy(
            zero_copy_only=False), table.column("source_row").to_numpy())
        order = np.argsort(ids, kind="stable")
        vec = np.empty((len(ids), session.dim), np.float32)
        vec[order] = store.vectors(ids[order])
        vec = unit_rows(vec)
    else:
        uids = table.column("unique_id").to_pylist()
        try:
            got = session.con.execute(
                "SELECT unique_id, embedding FROM embeddings WHERE unique_id IN "
                "(SELECT unnest(CAST(? AS VARCHAR[])))", [sorted(set(uids))]).to_arrow_table()
        except duckdb.Error as exc:
            raise sql_error(exc) from exc
        from mtquery.standard.schema import embedding_matrix

        mat = unit_rows(embedding_matrix(got.column("embedding")))
        where = {u: i for i, u in enumerate(got.column("unique_id").to_pylist())}
        vec = np.full((len(uids), session.dim), np.nan, np.float32)
        for i, u in enumerate(uids):
            if u in where:
                vec[i] = mat[where[u]]
    ok = np.isfinite(vec).all(axis=1)
    return table.filter(pa.array(ok)), vec[ok]


def as_labels(table: pa.Table, vectors: np.ndarray, info: dict) -> Labels:
    return Labels(unique_id=np.asarray(table.column("unique_id").to_pylist(), dtype=object),
                  y=table.column("y").to_numpy().astype(np.int8),
                  lat=table.column("centre_lat").to_numpy(zero_copy_only=False).astype(float),
                  lon=table.column("centre_lon").to_numpy(zero_copy_only=False).astype(float),
                  vectors=vectors, info=info,
                  background=(table.column("background").to_numpy(zero_copy_only=False)
                              .astype(bool) if "background" in table.column_names else None))
