"""Standard rows from Arrow batches of any embedding table: the pyarrow readers' side of
``mtquery.io.derive`` (the vector store, the index build, extract and convert read Parquet
row groups with pyarrow, then derive the standard columns with the views' own SQL, run by
DuckDB over the batch).

``source_columns`` says which columns to read from a file; ``standard_rows`` turns what was
read into standard columns: for a standard file the columns as they are, otherwise the
``embeddings`` view of ``sql/10_embeddings.sql`` over the batch, the file's name and its row
numbers (``source``, ``first_row``), so derived ids and grid cells equal the session's.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.io.columns import Roles

_LOCAL = threading.local()
BATCH = "__mtq_batch"


def source_columns(roles: Roles, names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The columns to read from a file (with ``names``) for the standard columns ``wanted``:
    those columns themselves for a standard file, else every column the roles read plus
    the standard ones the file has."""
    if roles.standard:
        return [c for c in wanted if c in names]
    extra = [c for c in ("product_id", "grid_cell", "grid_row_u", "grid_col_r", "pixel_bbox",
                         "utm_footprint", "utm_crs") if c in names]
    return list(dict.fromkeys([c for c in roles.source_columns() if c in names] + extra))


def _dim_of(column: pa.ChunkedArray) -> int:
    """The length of the first vector (the CAST to FLOAT[dim] refuses any other length)."""
    for v in column.drop_null().slice(0, 1).to_pylist():
        return len(v[0]) if v and isinstance(v[0], list) else len(v or [])
    return 1


def without_half_floats(t: pa.DataType) -> pa.DataType:
    """``t`` with float16 values (in lists too) as float32: DuckDB takes no Arrow half
    float, and its Parquet reader gives FLOAT for them, so the views see the same type."""
    if pa.types.is_float16(t):
        return pa.float32()
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        return t
    inner = without_half_floats(t.value_type)
    if inner == t.value_type:
        return t  # as it is (its value field's name too): nothing to cast
    if pa.types.is_fixed_size_list(t):
        return pa.list_(inner, t.list_size)
    return pa.large_list(inner) if pa.types.is_large_list(t) else pa.list_(inner)


def _connection() -> duckdb.DuckDBPyConnection:
    con = getattr(_LOCAL, "con", None)
    if con is None:
        from mtquery.query.session import new_connection

        con = new_connection(extensions=("spatial",), threads=1)
        con.execute("SET enable_progress_bar = false")
        _LOCAL.con = con
    return con


def _without_float16(table: pa.Table) -> pa.Table:
    """``table`` with its float16 columns as float32 ones (``without_half_floats``)."""
    for i, f in enumerate(table.schema):
        wide = without_half_floats(f.type)
        if wide != f.type:
            table = table.set_column(i, f.name, table.column(i).cast(wide))
    return table


def standard_rows(table: pa.Table, roles: Roles, wanted: Sequence[str], source: str,
                  first_row: int, sources: Sequence[str], dim: int | None = None
                  ) -> pa.Table:
    """The standard columns ``wanted`` of ``table`` (rows ``first_row``.. of file ``source``
    of a dataset of ``sources``), derived as the views derive them. ``embedding`` among
    ``wanted`` comes as FLOAT[dim] and ``geometry`` as WKB."""
    if roles.standard:
        return table.select([c for c in wanted if c in table.column_names])
    from mtquery.io.derive import bind
    from mtquery.query.session import view_statements

    n = table.num_rows
    batch = _without_float16(table).append_column("filename", pa.array([source] * n, pa.string()))
    batch = batch.append_column("file_row_number",
                                pa.array(np.arange(first_row, first_row + n), pa.int64()))
    con = _connection()
    try:
        con.register(BATCH, batch)
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {BATCH}").fetchall()}
        bind(con, roles, sources)
        view = view_statements(roles, types, dim or _dim_of(batch.column(roles.vector)),
                               base=BATCH)
        con.execute(next(text for name, text in view if name.startswith("10_")))
        cols = ", ".join(("ST_AsWKB(geometry) AS geometry" if c == "geometry" else f'"{c}"')
                         for c in wanted)
        out = con.execute(f"SELECT {cols} FROM embeddings ORDER BY source_row").to_arrow_table()
    except duckdb.Error as exc:
        raise DataError(f"cannot derive the standard columns of {source}: "
                        f"{str(exc).splitlines()[0]}") from exc
    finally:
        con.unregister(BATCH)
    if out.num_rows != n:
        raise DataError(f"deriving the standard columns of {source} gave {out.num_rows} rows "
                        f"for {n}")
    return out
