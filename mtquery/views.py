"""Create the SQL views of ``sql/*.sql`` on a connection for a resolved dataset.

The .sql files hold structural placeholders (``{embedding}``, ``{geometry}``...) that are
filled with column expressions chosen from the file's schema; user values never enter the SQL
text: the dataset's file list is bound with ``SET VARIABLE mtquery_sources = ?``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import duckdb

from mtquery.datasets import Dataset
from mtquery.duck import describe_error
from mtquery.errors import DataError
from mtquery.schema import REQUIRED

SOURCES_VAR = "mtquery_sources"
_TYPE_RE = re.compile(r"^(FLOAT|DOUBLE|REAL|DECIMAL\(\d+,\d+\))((?:\[\d*\])+)$")

#: optional columns -> SQL used when the file lacks them
_OPTIONAL = {
    "grid_row_u": "CAST(NULL AS SMALLINT)",
    "grid_col_r": "CAST(NULL AS SMALLINT)",
    "utm_footprint": "CAST(NULL AS VARCHAR)",
    "utm_crs": "CAST(NULL AS VARCHAR)",
    "pixel_bbox": "CAST(NULL AS BIGINT[])",
    "bbox": "CAST(NULL AS STRUCT(xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE))",
}


@dataclass(frozen=True)
class DatasetShape:
    """What the views were built from: the embedding dimension and the optional columns."""

    dim: int
    columns: dict[str, str]

    @property
    def has_bbox(self) -> bool:
        return "bbox" in self.columns


def sql_files() -> list[tuple[str, str]]:
    """(name, text) of every view definition shipped in the ``mtquery.sql`` package, in order."""
    root = resources.files("mtquery.sql")
    files = sorted((p.name, p.read_text(encoding="utf-8")) for p in root.iterdir()
                   if p.name.endswith(".sql"))
    if not files:
        raise DataError("no view definitions found in the mtquery.sql package (broken install)")
    return files


def _source_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    try:
        rows = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet(getvariable('{SOURCES_VAR}'))"
        ).fetchall()
    except duckdb.Error as exc:
        raise DataError(f"cannot read dataset: {describe_error(exc)}") from exc
    return {r[0]: r[1] for r in rows}


def _embedding_expr(
    con: duckdb.DuckDBPyConnection, dtype: str, dataset: Dataset
) -> tuple[str, int]:
    m = _TYPE_RE.match(dtype.replace(" ", ""))
    if not m:
        raise DataError(f"embedding column has type {dtype}; expected a list of floats")
    dims = re.findall(r"\[(\d*)\]", m.group(2))
    if len(dims) > 2 or (len(dims) == 2 and dims[0] not in ("", "1")):
        raise DataError(f"embedding column has type {dtype}; expected FLOAT[] or Array2D(1, dim)")
    flat = "flatten(embedding)" if len(dims) == 2 else "embedding"
    if dims[-1]:
        dim = int(dims[-1])
    else:
        dim = _probe_dim(con, flat, dataset)
    if dim <= 0:
        raise DataError("embedding vectors are empty")
    return f"CAST({flat} AS FLOAT[{dim}])", dim


def _probe_dim(con: duckdb.DuckDBPyConnection, flat: str, dataset: Dataset) -> int:
    """Dimension from the first vector of each local file (first file only for remote sets)."""
    targets = list(dataset.sources) if not dataset.remote and len(dataset.sources) <= 256 else [
        dataset.sources[0]]
    dims: dict[int, str] = {}
    for src in targets:
        try:
            row = con.execute(
                f"SELECT len({flat}) FROM read_parquet(?) WHERE embedding IS NOT NULL LIMIT 1",
                [src],
            ).fetchone()
        except duckdb.Error as exc:
            raise DataError(f"cannot read {src}: {describe_error(exc)}") from exc
        if row is not None:
            dims.setdefault(int(row[0]), src)
    if not dims:
        raise DataError("the dataset has no rows with an embedding")
    if len(dims) > 1:
        detail = ", ".join(f"{d} in {src}" for d, src in dims.items())
        raise DataError(f"mixed embedding dimensions across files: {detail}")
    return next(iter(dims))


def _fill(text: str, fill: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: fill.get(m.group(1), m.group(0)), text)


def create_views(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> DatasetShape:
    """Bind the dataset's sources and create every view; returns what was found."""
    con.execute(f"SET VARIABLE {SOURCES_VAR} = ?", [list(dataset.sources)])
    cols = _source_columns(con)
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise DataError(f"{dataset.spec}: not a Major TOM embedding dataset, missing standard "
                        f"column(s): {', '.join(missing)}")
    embedding, dim = _embedding_expr(con, cols["embedding"], dataset)
    geometry = "geometry" if cols["geometry"].startswith("GEOMETRY") else (
        "ST_GeomFromWKB(geometry)")
    fill = {"embedding": embedding, "geometry": geometry, "dim": str(dim)}
    for name, null_sql in _OPTIONAL.items():
        fill[name] = name if name in cols else null_sql
    for name, text in sql_files():
        try:
            con.execute(_fill(text, fill))
        except duckdb.Error as exc:
            raise DataError(f"cannot create views from {name}: {describe_error(exc)}") from exc
    con.execute("SET VARIABLE mtquery_dim = ?", [dim])
    return DatasetShape(dim=dim, columns=cols)
