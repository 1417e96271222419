"""Place / time / cell filters and the search query: pure functions that build SQL with bound
parameters, and thin runners."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from mtquery.duck import describe_error
from mtquery.engine import Session
from mtquery.errors import DataError, UsageError
from mtquery.grid import parse_cells
from mtquery.params import BBox, TimeRange

RESULT_COLUMNS = ("unique_id", "grid_cell", "timestamp", "product_id", "centre_lat",
                  "centre_lon")


@dataclass(frozen=True)
class Filters:
    """Candidate filters: the geometry intersects ``bbox``, the acquisition lies in ``time``,
    the fragment is in ``cell``. Empty filters select everything."""

    bbox: BBox | None = None
    time: TimeRange = field(default_factory=TimeRange)
    cell: str | None = None

    def __post_init__(self) -> None:
        if self.cell is not None:
            parse_cells([self.cell])  # raises UsageError on a malformed name

    @property
    def empty(self) -> bool:
        return (self.bbox is None and self.time.start is None and self.time.end is None
                and self.cell is None)


def where_sql(filters: Filters, has_bbox_column: bool = False) -> tuple[str, list]:
    """``WHERE`` clause (or ``""``) and its parameters. With a bbox covering column, the cheap
    struct comparison runs first so row groups are pruned, then the exact ST_Intersects."""
    clauses: list[str] = []
    params: list = []
    b = filters.bbox
    if b is not None:
        if has_bbox_column:
            clauses.append("bbox.xmin <= ? AND bbox.xmax >= ? AND bbox.ymin <= ? AND "
                           "bbox.ymax >= ?")
            params += [b.max_lon, b.min_lon, b.max_lat, b.min_lat]
        clauses.append("ST_Intersects(geometry, ST_MakeEnvelope(?, ?, ?, ?))")
        params += [b.min_lon, b.min_lat, b.max_lon, b.max_lat]
    if filters.time.start is not None:
        clauses.append("acquired_at >= ?")
        params.append(filters.time.start)
    if filters.time.end is not None:
        clauses.append("acquired_at < ?")
        params.append(filters.time.end)
    if filters.cell is not None:
        clauses.append("grid_cell = ?")
        params.append(filters.cell)
    if not clauses:
        return "", []
    return "WHERE " + "\n  AND ".join(clauses), params


def search_sql(filters: Filters, limit: int | None, has_bbox_column: bool = False,
               columns: tuple[str, ...] = RESULT_COLUMNS) -> tuple[str, list]:
    where, params = where_sql(filters, has_bbox_column)
    sql = f"SELECT {', '.join(columns)}\nFROM embeddings\n{where}".rstrip()
    sql += "\nORDER BY acquired_at, grid_cell, unique_id"
    if limit is not None:
        sql += "\nLIMIT ?"
        params = [*params, int(limit)]
    return sql, params


def run(session: Session, sql: str, params: list | None = None) -> pa.Table:
    """Execute a statement and return an Arrow table; DuckDB errors become DataError."""
    try:
        return session.con.execute(sql, params or []).to_arrow_table()
    except duckdb.InvalidInputException as exc:
        raise DataError(describe_error(exc)) from exc
    except duckdb.ConversionException as exc:
        raise DataError(_conversion_hint(exc)) from exc
    except duckdb.Error as exc:
        raise DataError(describe_error(exc)) from exc


def _conversion_hint(exc: BaseException) -> str:
    msg = describe_error(exc)
    if "FLOAT[" in msg or "array" in msg.lower():
        return f"mixed embedding dimensions in the dataset ({msg})"
    return msg


LOCATIONS_SQL = "SELECT source_file, source_row FROM embeddings"


def filtered_locations(session: Session, filters: Filters) -> pa.Table:
    """(source_file, source_row) of every fragment passing the filters: how the exact scan
    and the ANN index turn a filter into allowed rows."""
    where, params = where_sql(filters, session.shape.has_bbox)
    return run(session, f"{LOCATIONS_SQL}\n{where}".rstrip(), params)


def search(session: Session, filters: Filters, limit: int | None = 100) -> pa.Table:
    """Fragments matching the filters, ordered by acquisition time, cell and id."""
    if limit is not None and limit <= 0:
        raise UsageError(f"--limit must be positive, e.g. 100 (got {limit})")
    sql, params = search_sql(filters, limit, session.shape.has_bbox)
    return run(session, sql, params)
