"""The column roles of a dataset (``mtquery.io.columns``): detected once from its schema and
GeoParquet metadata, or named with ``--columns``, and remembered.

A ``--columns`` given once for a dataset is remembered under ``$MTQUERY_CACHE/columns/``
(keyed by the dataset's files or URLs), so later commands on the same files use it without
saying it again; the roles a vector store or an index was built with are recorded in it, and
one built with other roles is not used. ``--columns ''`` (empty) forgets a remembered one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from contextvars import ContextVar
from pathlib import Path

import duckdb

from mtquery.errors import DataError
from mtquery.io.columns import Roles, detect, override_text, parse_override
from mtquery.io.datasets import Dataset

#: ``--columns`` of the running command (the CLI sets it; a Dataset's own ``columns`` wins)
OVERRIDE: ContextVar[str | None] = ContextVar("mtquery_columns", default=None)
#: rows of the first file whose coordinates decide whether a geometry without CRS is lon/lat
PROBE_ROWS = 10_000
_MEMO: dict[tuple, Roles] = {}


def _memory_file(dataset: Dataset) -> Path | None:
    from mtquery.io.cache import cache_root

    root = cache_root()
    if root is None or dataset.entry is not None:
        return None
    names = sorted(s if "://" in s else str(Path(s).resolve()) for s in dataset.sources)
    key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:24]
    return root / "columns" / f"{key}.json"


def remembered(dataset: Dataset) -> str | None:
    """The ``--columns`` remembered for the dataset's files, if any."""
    path = _memory_file(dataset)
    if path is None or not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("columns")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def remember(dataset: Dataset, columns: str) -> None:
    """Remember (or, with an empty text, forget) the ``--columns`` of the dataset's files."""
    path = _memory_file(dataset)
    if path is None:
        return
    if not columns:
        with contextlib.suppress(OSError):
            path.unlink()
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"columns": columns, "sources": list(dataset.sources)}),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # memory is a convenience: the command still runs with the roles given


def _geo(con: duckdb.DuckDBPyConnection, first: str) -> dict | None:
    try:
        # decode, not CAST: DuckDB casts a BLOB to text with '"' escaped as \x22
        row = con.execute("SELECT decode(value) FROM parquet_kv_metadata(?) "
                          "WHERE decode(key) = 'geo'", [first]).fetchone()
    except duckdb.Error:
        return None
    if row is None:
        return None
    try:
        geo = json.loads(row[0])
    except ValueError:
        return None
    return geo if isinstance(geo, dict) else None


def _check_lonlat(con: duckdb.DuckDBPyConnection, roles: Roles, types: dict[str, str],
                  first: str) -> None:
    """A geometry without CRS must have lon/lat coordinates (a sample of the first file)."""
    from mtquery.io.derive import geometry_expr

    g = geometry_expr(roles.geometry, types[roles.geometry], None)
    try:
        row = con.execute(
            f"SELECT min(ST_XMin(g)), min(ST_YMin(g)), max(ST_XMax(g)), max(ST_YMax(g)) "
            f"FROM (SELECT {g} AS g FROM read_parquet(?) LIMIT {PROBE_ROWS})", [first]
        ).fetchone()
    except duckdb.Error as exc:
        raise DataError(f"column {roles.geometry!r} cannot be read as a geometry: "
                        f"{str(exc).splitlines()[0]}") from exc
    if row is None or row[0] is None:
        return
    xmin, ymin, xmax, ymax = row
    if xmin < -180 or xmax > 180 or ymin < -90 or ymax > 90:
        raise DataError(f"the geometry column {roles.geometry!r} has no CRS and its "
                        f"coordinates ({xmin:.6g}, {ymin:.6g}, {xmax:.6g}, {ymax:.6g}) are not "
                        "lon/lat; name its CRS with --columns crs=EPSG:CODE")


def roles_for(con: duckdb.DuckDBPyConnection, dataset: Dataset,
              types: dict[str, str]) -> Roles:
    """The dataset's roles (``types``: its columns as DuckDB reads them): its own
    ``--columns``, else a remembered one, else detected. Memoised per process."""
    given = dataset.columns if dataset.columns is not None else OVERRIDE.get()
    text = given if given is not None else remembered(dataset)
    override = parse_override(text)
    key = (dataset.sources, override_text(override), tuple(types.items()))
    roles = _MEMO.get(key)
    if roles is None:
        first = dataset.duckdb_sources[0]
        geo = _geo(con, first) if not override or "crs" not in override else None
        roles = detect(types, geo, override)
        if roles.notices and roles.geometry and not roles.crs and "crs" not in override:
            _check_lonlat(con, roles, types, first)
        _MEMO[key] = roles
    if given is not None and given != remembered(dataset):
        remember(dataset, override_text(override))
    return roles


def roles_of(dataset: Dataset) -> Roles:
    """The roles of a dataset for the readers that do not open a session (the vector store,
    the index build): its schema read once (memoised with the roles)."""
    from mtquery.query.session import SOURCES_VAR, _source_columns, new_connection

    con = new_connection(extensions=("spatial", "httpfs") if dataset.remote else ("spatial",))
    try:
        con.execute(f"SET VARIABLE {SOURCES_VAR} = ?", [dataset.duckdb_sources])
        return roles_for(con, dataset, _source_columns(con, dataset.sources))
    finally:
        con.close()
