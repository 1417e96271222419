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


def _with_vector(table: pa.Table, column: str, wanted: bool) -> pa.Table:
    """The vector column as DuckDB takes it from Arrow: float16 values as float32 (DuckDB
    has no half float), or, when the vector is not asked for, an empty placeholder."""
    i = table.column_names.index(column) if column in table.column_names else -1
    if not wanted:
        empty = pa.nulls(table.num_rows, pa.list_(pa.float32()))
        return table.set_column(i, column, empty) if i >= 0 else table.append_column(column,
                                                                                      empty)
    col = table.column(i)
    t = col.type
    inner = t.value_type
    if pa.types.is_float16(inner) or (pa.types.is_list(inner) or pa.types.is_fixed_size_list(
            inner)) and pa.types.is_float16(inner.value_type):
        import pyarrow.compute as pc

        col = pc.cast(col, _float32_like(t))
        table = table.set_column(i, column, col)
    return table


def _dim_of(column: pa.ChunkedArray) -> int:
    """The length of the first vector (the CAST to FLOAT[dim] refuses any other length)."""
    for v in column.drop_null().slice(0, 1).to_pylist():
        return len(v[0]) if v and isinstance(v[0], list) else len(v or [])
    return 1


def _float32_like(t: pa.DataType) -> pa.DataType:
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_fixed_size_list(t):
        return pa.list_(_float32_like(t.value_type), t.list_size)
    return pa.list_(_float32_like(t.value_type))


def _connection() -> duckdb.DuckDBPyConnection:
    con = getattr(_LOCAL, "con", None)
    if con is None:
        from mtquery.query.session import new_connection

        con = new_connection(extensions=("spatial",), threads=1)
        con.execute("SET enable_progress_bar = false")
        _LOCAL.con = con
    return con


def _without_float16(table: pa.Table) -> pa.Table:
    """``table`` with float16 lists as float32 ones (DuckDB takes no Arrow halffloat; its
    Parquet reader gives FLOAT for them, so the views see the same type)."""
    for i, f in enumerate(table.schema):
        t = f.type
        if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
                ) and pa.types.is_float16(t.value_type):
            wide = (pa.list_(pa.float32(), t.list_size) if pa.types.is_fixed_size_list(t) else
                    pa.large_list(pa.float32()) if pa.types.is_large_list(t) else
                    pa.list_(pa.float32()))
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
