"""The column roles of a dataset (``mtquery.io.columns``): detected once from its schema and
GeoParquet metadata, or named with ``--columns``, and remembered.

A ``--columns`` given once for a dataset is remembered under ``$MTQUERY_CACHE/columns/``
(keyed by the dataset's files or URLs), so later commands on the same files use it without
saying it again; the roles a vector store or an index was built with are recorded in it, and
one built with other roles is not used. ``--columns ''`` (empty) forgets a remembered one.
"""

from __future__ import annotations

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
#: the roles of each dataset this process has read (by files, sizes, times and --columns)
_SEEN: dict[tuple, Roles] = {}


def _memory_file(dataset: Dataset) -> Path | None:
    from mtquery.io.cache import cache_root

    root = cache_root()
    if root is None or dataset.entry is not None:
        return None
    names = sorted(s if "://" in s else str(Path(s).resolve()) for s in dataset.sources)
    key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:24]
    return root / "columns" / f"{key}.json"


def _read_memory(dataset: Dataset) -> dict:
    path = _memory_file(dataset)
    if path is None or not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def remembered(dataset: Dataset) -> str | None:
    """The ``--columns`` remembered for the dataset's files, if any."""
    value = _read_memory(dataset).get("columns")
    return value if isinstance(value, str) and value else None


def _remembered_roles(dataset: Dataset, override: str, schema: str) -> Roles | None:
    """The roles detected before for the same files, ``--columns`` and schema."""
    doc = _read_memory(dataset)
    if doc.get("override") != override or doc.get("schema") != schema:
        return None
    try:
        roles = Roles.from_dict(doc["roles"])
        return Roles(**{**roles.__dict__, "notices": tuple(doc.get("notices", ()))})
    except (KeyError, TypeError, DataError):
        return None


def remember(dataset: Dataset, columns: str | None, roles: Roles | None = None,
             schema: str = "") -> None:
    """Remember the ``--columns`` of the dataset's files (``''``: forget it) and the roles
    read with it; a convenience: a cache that cannot be written is left alone."""
    path = _memory_file(dataset)
    if path is None:
        return
    doc = {"columns": columns or None, "override": columns or "", "schema": schema,
           "sources": list(dataset.sources)}
    if roles is not None:
        doc.update(roles=roles.to_dict(), notices=list(roles.notices))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


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


def roles_for(con: duckdb.DuckDBPyConnection | None, dataset: Dataset,
              types: dict[str, str], geo: dict | None = None) -> Roles:
    """The dataset's roles (``types``: its columns as DuckDB reads them): its own
    ``--columns``, else a remembered one, else detected. Memoised per process. Without
    ``con`` (remote files read by their footers) the GeoParquet metadata is ``geo`` and
    coordinates without a CRS are taken for lon/lat unchecked."""
    key = _seen_key(dataset)
    roles = _SEEN.get(key) if key is not None else None
    if roles is None:
        roles = _roles_for(con, dataset, types, geo)
        if key is not None:
            _SEEN[key] = roles
    return roles


def _seen_key(dataset: Dataset) -> tuple | None:
    """The dataset as this process saw it: sources, --columns, local files' sizes and
    modification times (a file written anew is looked at anew); None when a file cannot be
    looked at (nothing memoised)."""
    stats = []
    for f in dataset.local_files:
        try:
            st = f.stat()
        except OSError:
            return None
        stats.append((st.st_size, st.st_mtime_ns))
    given = dataset.columns if dataset.columns is not None else OVERRIDE.get()
    return (dataset.sources, given, tuple(stats))


def _roles_for(con: duckdb.DuckDBPyConnection | None, dataset: Dataset,
               types: dict[str, str], geo: dict | None) -> Roles:
    from mtquery.standard.schema import REQUIRED

    given = dataset.columns if dataset.columns is not None else OVERRIDE.get()
    if not given and all(c in types for c in REQUIRED):
        return detect(types)  # a standard file: nothing to detect, remember or read
    text = given if given is not None else remembered(dataset)
    override = parse_override(text)
    spelled = override_text(override)
    schema = hashlib.sha256(json.dumps(sorted(types.items())).encode()).hexdigest()[:16]
    roles = _remembered_roles(dataset, spelled, schema) if given is None else None
    if roles is None:
        if not override and all(c in types for c in REQUIRED):
            return detect(types)
        first = dataset.duckdb_sources[0]
        if con is not None and "crs" not in override:
            geo = _geo(con, first)
        roles = detect(types, geo if "crs" not in override else None, override)
        if (con is not None and roles.notices and roles.geometry and not roles.crs
                and "crs" not in override):
            _check_lonlat(con, roles, types, first)
        remember(dataset, spelled, roles, schema)  # not detected again at the next query
    return roles


def roles_of(dataset: Dataset) -> Roles:
    """The roles of a dataset for the readers that do not open a session (the vector store,
    the index build): its schema read once (memoised with the roles)."""
    from mtquery.query.session import SOURCES_VAR, _source_columns, new_connection

    key = _seen_key(dataset)
    seen = _SEEN.get(key) if key is not None else None
    if seen is not None:  # a session of this process read them (no second connection)
        return seen
    if dataset.remote:
        from mtquery.io.cost import footers_of

        footers = footers_of(dataset)  # mtquery's own reads: retries, the URL named
        if footers:
            return roles_for(None, dataset, footer_types(footers[0].schema), footers[0].geo)
    con = new_connection(extensions=("spatial", "httpfs") if dataset.remote else ("spatial",))
    try:
        con.execute(f"SET VARIABLE {SOURCES_VAR} = ?", [dataset.duckdb_sources])
        return roles_for(con, dataset, _source_columns(con, dataset.sources))
    finally:
        con.close()


def footer_types(schema) -> dict[str, str]:
    """A file's columns as DuckDB names their types, from its Arrow schema (no data read;
    half floats as floats, which DuckDB reads them as)."""
    import pyarrow as pa

    from mtquery.io.standardize import without_half_floats

    def plain(t: pa.DataType) -> pa.DataType:
        return without_half_floats(t.storage_type if isinstance(t, pa.ExtensionType) else t)

    empty = pa.schema([pa.field(f.name, plain(f.type)) for f in schema]).empty_table()
    con = duckdb.connect()
    try:
        con.register("mtq_schema", empty)
        return {r[0]: r[1] for r in con.execute("DESCRIBE SELECT * FROM mtq_schema").fetchall()}
    finally:
        con.close()
