"""Search by place, time and cell: the SQL (pure functions, bound parameters) and its runner."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.query.filters import FRAGMENT_REACH_KM, Filters, check_limit, where_sql
from mtquery.query.session import Session, describe_error
from mtquery.vectors.store import RESULT_COLUMNS

ORDER_SQL = "ORDER BY acquired_at, grid_cell, unique_id"


def search_sql(filters: Filters, limit: int | None, has_bbox_column: bool = False,
               columns: tuple[str, ...] = RESULT_COLUMNS,
               reach_km: float | None = FRAGMENT_REACH_KM) -> tuple[str, list]:
    """The search statement and its parameters (``reach_km``: see ``where_sql``)."""
    where, params = where_sql(filters, has_bbox_column, reach_km)
    sql = f"SELECT {', '.join(columns)}\nFROM embeddings\n{where}".rstrip()
    sql += "\n" + ORDER_SQL
    if limit is not None:
        sql += "\nLIMIT ?"
        params = [*params, int(limit)]
    return sql, params


def sql_error(exc: BaseException, session: Session | None = None) -> DataError:
    """A DuckDB error as a one-line DataError (with a hint for mixed dimensions; a network
    failure of a remote dataset names its URL)."""
    msg = describe_error(exc, session.dataset.sources if session is not None else ())
    if isinstance(exc, duckdb.ConversionException) and ("FLOAT[" in msg
                                                         or "array" in msg.lower()):
        msg = f"mixed embedding dimensions in the dataset ({msg})"
    return DataError(msg)


def run(session: Session, sql: str, params: list | None = None) -> pa.Table:
    """Execute a statement and return an Arrow table; DuckDB errors become DataError."""
    try:
        return session.execute(sql, params).to_arrow_table()
    except duckdb.Error as exc:
        raise sql_error(exc, session) from exc


LOCATIONS_SQL = "SELECT source_file, source_row FROM embeddings"


#: timestamps that say "no time": they never match a time window, and are not an error
NO_TIME = ("", "unknown", "none", "null", "nan", "nat", "n/a", "na", "-")
UNREADABLE_TIME_SQL = (
    'SELECT "timestamp", unique_id FROM embeddings\n'
    'WHERE acquired_at IS NULL AND "timestamp" IS NOT NULL\n'
    f'  AND lower(trim("timestamp")) NOT IN ({", ".join("?" * len(NO_TIME))})\nLIMIT 1')
_TIMES_READ: dict[tuple, bool] = {}  # local datasets (files, mtimes) whose times all read


def check_times(session: Session, filters: Filters | None = None) -> None:
    """A time window needs times: DataError (one line) when a local dataset holds a
    timestamp the views cannot read as one (a time filter would silently never match it).
    Checked once per dataset and process; remote datasets are not scanned for it (the cost:
    ``mtquery validate`` flags such values)."""
    if filters is not None and filters.time.start is None and filters.time.end is None:
        return
    ds = session.dataset
    if ds.remote or not ds.local_files:
        return
    try:
        key = tuple((str(f), f.stat().st_mtime_ns) for f in ds.local_files)
    except OSError:
        return
    if key in _TIMES_READ:
        return
    bad = run(session, UNREADABLE_TIME_SQL, list(NO_TIME)).to_pylist()
    if bad:
        raise DataError(f"time filters cannot be applied: timestamp {bad[0]['timestamp']!r} "
                        f"(unique_id {bad[0]['unique_id']}) is not a time (S2 style "
                        "20200717T105031 or ISO 8601); fix "
                        "the data ('mtquery validate' lists every such row) or leave out "
                        "start / end", "start")
    if len(_TIMES_READ) > 256:
        _TIMES_READ.clear()
    _TIMES_READ[key] = True


def filtered_locations(session: Session, filters: Filters) -> pa.Table:
    """(source_file, source_row) of every fragment passing the filters: how the exact scan
    and the ANN index turn a filter into allowed rows."""
    check_times(session, filters)
    where, params = where_sql(filters, session.shape.has_bbox, session.shape.reach_km)
    return run(session, f"{LOCATIONS_SQL}\n{where}".rstrip(), params)


def search(session: Session, filters: Filters, limit: int | None = 100,
           columns: tuple[str, ...] = RESULT_COLUMNS) -> pa.Table:
    """Fragments matching the filters, ordered by acquisition time, cell and id."""
    check_limit(limit)
    if session.dataset.remote:  # cost first: refused above the budget before any read
        from mtquery.io.cost import guard

        guard(session.dataset, filters, "search")
    check_times(session, filters)
    sql, params = search_sql(filters, limit, session.shape.has_bbox, columns,
                             session.shape.reach_km)
    return run(session, sql, params)
