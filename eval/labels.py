"""Label tables: read a label file with DuckDB into a temp table and join it to a dataset's
fragments.

Joins (``join=``):

* ``unique_id`` — the label table has a ``unique_id`` column.
* ``grid_cell`` — the label table has a ``grid_cell`` column; every fragment of that cell gets the
  label. Optional date window: ``start`` / ``end`` (on the fragment's acquisition time) and,
  when the table has a ``date`` column, ``window_days`` (|acquired - date| <= N days).
* ``spatial`` — the label table holds points or polygons (a GEOMETRY / WKB / WKT ``geometry``
  column, or ``lon``/``lat`` columns): each fragment gets the labels of the points it contains
  and the polygons it intersects (DuckDB spatial).

Multi-label: a list-valued label column, or several label rows per fragment (see
``resolve_labels``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from mtquery.errors import DataError, UsageError
from mtquery.query.session import describe_error

JOINS = ("unique_id", "grid_cell", "spatial")
LABEL_TABLE = "mt_eval_labels"
_KEY_COLS = {"unique_id", "grid_cell", "geometry", "date", "lon", "lat", "longitude", "latitude",
             "x", "y", "geom", "wkt"}
_VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".kml", ".gml")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _qident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reader(path: Path) -> str:
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else (
        path.suffix.lower())
    if suffix in (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz"):
        return "read_csv(?, auto_detect = true, header = true)"
    if suffix in (".parquet", ".geoparquet", ".pq"):
        return "read_parquet(?)"
    if suffix in _VECTOR_SUFFIXES:
        return "ST_Read(?)"
    raise UsageError(f"label file {path}: unknown format {path.suffix!r} (use .csv, .parquet, "
                     ".geoparquet, .geojson or .gpkg)")


def describe_labels(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {_reader(path)}", [str(path)]).fetchall()
    except duckdb.Error as exc:
        raise DataError(f"cannot read label file {path}: {describe_error(exc)}") from exc
    return {r[0]: r[1] for r in rows}


def pick_label_col(cols: dict[str, str], label_col: str | None, path: Path) -> str:
    if label_col is not None:
        if label_col not in cols:
            raise UsageError(f"label_col {label_col!r} is not a column of {path.name} "
                             f"(columns: {', '.join(cols)})", "label_col")
        return label_col
    for name in ("label", "labels", "class", "category"):
        if name in cols:
            return name
    rest = [c for c in cols if c.lower() not in _KEY_COLS]
    if len(rest) == 1:
        return rest[0]
    raise UsageError(f"cannot tell which column of {path.name} holds the labels (columns: "
                     f"{', '.join(cols)}); name it with label_col", "label_col")


def _geometry_expr(cols: dict[str, str], path: Path) -> str:
    for name in ("geometry", "geom", "wkt", "wkb_geometry"):
        if name in cols:
            t = cols[name].upper()
            q = _qident(name)
            if t.startswith("GEOMETRY"):
                return q
            if t == "BLOB":
                return f"ST_GeomFromWKB({q})"
            if t == "VARCHAR":
                return f"ST_GeomFromText({q})"
            raise DataError(f"label file {path.name}: column {name!r} has type {cols[name]}, "
                            "not a geometry, WKB or WKT")
    for lon, lat in (("lon", "lat"), ("longitude", "latitude"), ("x", "y")):
        if lon in cols and lat in cols:
            return f"ST_Point(CAST({_qident(lon)} AS DOUBLE), CAST({_qident(lat)} AS DOUBLE))"
    raise UsageError(f"join 'spatial' needs a geometry column (geometry/geom/wkt) or lon/lat "
                     f"columns in {path.name} (columns: {', '.join(cols)})", "join")


def load_label_table(con: duckdb.DuckDBPyConnection, path: str | Path, label_col: str | None,
                     join: str) -> dict:
    """Create the temp table ``mt_eval_labels`` (key columns + ``label VARCHAR``, one row per
    label, list columns unnested). Returns a description for the results JSON."""
    if join not in JOINS:
        raise UsageError(f"unknown join {join!r}; choose one of {', '.join(JOINS)}", "join")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file not found: {path}", "labels")
    cols = describe_labels(con, path)
    col = pick_label_col(cols, label_col, path)
    ctype = cols[col].upper()
    list_valued = ctype.endswith("]")
    lab = f"UNNEST({_qident(col)})" if list_valued else _qident(col)
    keys: list[str] = []
    if join == "unique_id":
        if "unique_id" not in cols:
            raise UsageError(f"join 'unique_id' needs a 'unique_id' column in {path.name} "
                             f"(columns: {', '.join(cols)})", "join")
        keys.append("CAST(unique_id AS VARCHAR) AS unique_id")
    elif join == "grid_cell":
        if "grid_cell" not in cols:
            raise UsageError(f"join 'grid_cell' needs a 'grid_cell' column in {path.name} "
                             f"(columns: {', '.join(cols)})", "join")
        keys.append("CAST(grid_cell AS VARCHAR) AS grid_cell")
        if "date" in cols:
            keys.append("TRY_CAST(date AS TIMESTAMP) AS date")
    else:
        keys.append(f"{_geometry_expr(cols, path)} AS geom")
    sql = (f"CREATE OR REPLACE TEMP TABLE {LABEL_TABLE} AS SELECT * FROM (SELECT "
           f"{', '.join(keys)}, CAST({lab} AS VARCHAR) AS label FROM {_reader(path)}) "
           "WHERE label IS NOT NULL AND label <> ''")
    try:
        con.execute(sql, [str(path)])
    except duckdb.Error as exc:
        raise DataError(f"cannot read labels from {path}: {describe_error(exc)}") from exc
    n = con.execute(f"SELECT count(*) FROM {LABEL_TABLE}").fetchone()[0]
    if n == 0:
        raise DataError(f"label file {path} has no non-empty values in column {col!r}")
    return {"path": str(path), "sha256": sha256_file(path), "label_col": col, "join": join,
            "label_rows": int(n), "list_valued": bool(list_valued)}


def join_sql(join: str, has_date: bool, window_days: int | None, start: str | None,
             end: str | None, area: bool) -> tuple[str, list]:
    params: list = []
    weight = "1.0"
    if join == "unique_id":
        on = "e.unique_id = l.unique_id"
    elif join == "grid_cell":
        on = "e.grid_cell = l.grid_cell"
        if window_days is not None:
            if not has_date:
                raise UsageError("window_days needs a 'date' column in the label file",
                                 "window_days")
            on += " AND abs(date_diff('second', l.date, e.acquired_at)) <= ?"
            params.append(int(window_days) * 86400)
    else:
        on = "ST_Intersects(e.geometry, l.geom)"
        if area:
            weight = ("CASE WHEN ST_Dimension(l.geom) = 2 THEN "
                      "ST_Area(ST_Intersection(e.geometry, l.geom)) ELSE 1.0 END")
    where = []
    if start:
        where.append("e.acquired_at >= CAST(? AS TIMESTAMP)")
        params.append(start)
    if end:
        where.append("e.acquired_at < CAST(? AS TIMESTAMP) + INTERVAL 1 DAY")
        params.append(end)
    sql = (
        "SELECT e.unique_id, e.source_file, e.source_row, e.grid_cell, e.timestamp, "
        f"e.centre_lat, e.centre_lon, l.label, {weight} AS w "
        f"FROM embeddings e JOIN {LABEL_TABLE} l ON {on}"
        + (" WHERE " + " AND ".join(where) if where else "")
    )
    agg = (
        "SELECT unique_id, any_value(source_file) AS source_file, "
        "any_value(source_row) AS source_row, any_value(grid_cell) AS grid_cell, "
        "any_value(timestamp) AS timestamp, any_value(centre_lat) AS lat, "
        "any_value(centre_lon) AS lon, list(label ORDER BY label) AS labels, "
        "list(w ORDER BY label) AS weights "
        f"FROM ({sql}) GROUP BY unique_id ORDER BY source_file, source_row"
    )
    return agg, params


def resolve_labels(labels: list, weights: list, mode: str) -> tuple[tuple[str, ...], bool]:
    """Distinct labels of one fragment; for mode 'no' the heaviest one."""
    if mode != "no":
        return tuple(sorted(set(labels))), False
    score: dict[str, float] = {}
    for lab, w in zip(labels, weights, strict=True):
        score[lab] = score.get(lab, 0.0) + float(w)
    best = max(sorted(score), key=lambda k: score[k])
    return (best,), len(score) > 1
