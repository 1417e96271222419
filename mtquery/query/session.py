"""A session: one DuckDB connection with the spatial (and, where needed, vss / httpfs)
extensions loaded from the installed ``duckdb-extension-*`` packages (no network; DuckDB's
own INSTALL only as a fallback), and the views of ``sql/*.sql`` over one dataset.

The .sql files hold structural placeholders (``{embedding}``, ``{geometry}``...) filled with
column expressions chosen from the file's schema; user values never enter the SQL text: the
dataset's file list is bound with ``SET VARIABLE mtquery_sources = ?``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from mtquery.errors import DataError
from mtquery.io.columns import STANDARD, Roles
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.derive import STANDARD_SOURCE, bind, flat_vector, ident, vector_layout
from mtquery.io.derive import fill as derive_fill

EXTENSIONS = ("spatial", "vss", "httpfs")
log = logging.getLogger("mtquery")


def extension_file(name: str) -> Path | None:
    """Path of ``<name>.duckdb_extension`` inside the ``duckdb-extension-<name>`` package."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    version = duckdb.__version__
    for root in spec.submodule_search_locations:
        exact = Path(root) / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if exact.is_file():
            return exact
        found = sorted(Path(root).rglob(f"{name}.duckdb_extension"))
        if found:
            return found[0]
    return None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """LOAD an extension, installing it from the package file first when needed."""
    try:
        con.execute(f"LOAD {name}")
        return
    except duckdb.Error:
        pass
    path = extension_file(name)
    try:
        if path is not None:
            con.execute(f"INSTALL '{_quote(str(path))}'")
        else:  # package absent: DuckDB's own repository (needs network)
            con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        raise DataError(
            f"cannot load DuckDB extension {name!r}: {_first_line(exc)} "
            f"(pip install duckdb-extension-{name}=={duckdb.__version__})"
        ) from exc


def new_connection(
    database: str = ":memory:",
    extensions: Sequence[str] = EXTENSIONS,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the given extensions loaded, its time zone UTC (times are
    UTC whatever $TZ says: strings without an offset are read as UTC, offsets are kept)."""
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    for name in extensions:
        load_extension(con, name)
    if "httpfs" in extensions:  # the retries and timeouts of mtquery's own remote reads
        from mtquery.io.http import duckdb_settings

        duckdb_settings(con)
    if threads:
        con.execute("SET threads = ?", [int(threads)])
    return con


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_error(exc: BaseException, sources: Sequence[str] = ()) -> str:
    """A one-line description of a DuckDB error for a user; a network failure reading
    remote ``sources`` names the URL (DuckDB's "Timeout was reached" names none)."""
    text = _first_line(exc)
    if any("://" in s for s in sources):
        from mtquery.io.http import duckdb_failure

        return duckdb_failure(text, sources) or text
    return text


SOURCES_VAR = "mtquery_sources"


@dataclass(frozen=True)
class DatasetShape:
    """What the views were built from: the embedding dimension, the source columns (name ->
    DuckDB type) and the column roles (``mtquery.io.columns``)."""

    dim: int
    columns: dict[str, str]
    roles: Roles = STANDARD

    @property
    def has_bbox(self) -> bool:
        return "bbox" in self.columns

    @property
    def reach_km(self) -> float | None:
        """How far a footprint may reach from its centre, for the query windows on the
        centre: Major TOM fragments 10 km (points: 0); footprints of a file of another shape:
        unknown (None: no centre window, the exact geometry test decides)."""
        from mtquery.query.filters import FRAGMENT_REACH_KM

        roles = self.roles
        return FRAGMENT_REACH_KM if roles.standard or roles.points else None

    @property
    def vector_type(self) -> str:
        return self.columns[self.roles.vector]


def sql_files() -> list[tuple[str, str]]:
    """(name, text) of every view definition shipped in the ``mtquery.sql`` package, in order."""
    root = resources.files("mtquery.sql")
    files = sorted((p.name, p.read_text(encoding="utf-8")) for p in root.iterdir()
                   if p.name.endswith(".sql"))
    if not files:
        raise DataError("no view definitions found in the mtquery.sql package (broken install)")
    return files


def _source_columns(con: duckdb.DuckDBPyConnection,
                    sources: Sequence[str] = ()) -> dict[str, str]:
    try:
        rows = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet(getvariable('{SOURCES_VAR}'))"
        ).fetchall()
    except duckdb.Error as exc:
        raise DataError(f"cannot read dataset: {describe_error(exc, sources)}") from exc
    return {r[0]: r[1] for r in rows}


def _embedding_dim(con: duckdb.DuckDBPyConnection, roles: Roles, dtype: str,
                   dataset: Dataset) -> int:
    _, fixed = vector_layout(dtype)
    if fixed:
        dim = fixed
    else:  # remote: from the footers' value counts, so opening reads no vector
        from mtquery.io.cost import footer_dim

        dim = ((footer_dim(dataset, roles.vector) if dataset.remote else None)
               or _probe_dim(con, flat_vector(roles.vector, dtype), roles.vector, dataset))
    if dim <= 0:
        raise DataError("embedding vectors are empty")
    return dim


def _probe_dim(con: duckdb.DuckDBPyConnection, flat: str, column: str,
               dataset: Dataset) -> int:
    """Dimension from the first vector of each local file (first file only for remote sets)."""
    pairs = list(zip(dataset.sources, dataset.duckdb_sources))  # glob characters escaped
    targets = pairs if not dataset.remote and len(pairs) <= 256 else pairs[:1]
    dims: dict[int, str] = {}
    for src, name in targets:
        try:
            row = con.execute(
                f"SELECT len({flat}) FROM read_parquet(?) WHERE {ident(column)} IS NOT NULL "
                "LIMIT 1", [name]).fetchone()
        except duckdb.Error as exc:
            raise DataError(f"cannot read {src}: {describe_error(exc, [name])}") from exc
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


def view_statements(roles: Roles, types: dict[str, str], dim: int,
                    base: str = STANDARD_SOURCE) -> list[tuple[str, str]]:
    """(file name, statement) of every view over the relation ``base`` with ``types`` read
    through ``roles``: the views of a session, and of an Arrow batch
    (``mtquery.io.standardize``)."""
    fill = derive_fill(roles, types, base)
    fill.update(embedding=f"CAST({fill['embedding_flat']} AS FLOAT[{dim}])", dim=str(dim))
    return [(name, _fill(text, fill)) for name, text in sql_files()]


_NOTED: set[tuple] = set()


def create_views(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> DatasetShape:
    """Bind the dataset's sources and create every view; returns what was found."""
    from mtquery.io.roles import roles_for

    con.execute(f"SET VARIABLE {SOURCES_VAR} = ?", [dataset.duckdb_sources])
    cols = _source_columns(con, dataset.sources)
    roles = roles_for(con, dataset, cols)
    for notice in roles.notices:
        if (dataset.sources, notice) not in _NOTED:  # once per dataset and process
            _NOTED.add((dataset.sources, notice))
            log.warning("%s", notice)
    dim = _embedding_dim(con, roles, cols[roles.vector], dataset)
    bind(con, roles, dataset.duckdb_sources)
    for name, text in view_statements(roles, cols, dim):
        try:
            con.execute(text)
        except duckdb.Error as exc:
            raise DataError(f"cannot create views from {name}: {describe_error(exc)}") from exc
    con.execute("SET VARIABLE mtquery_dim = ?", [dim])
    return DatasetShape(dim=dim, columns=cols, roles=roles)


DatasetArg = str | Path | Sequence[str | Path] | Dataset | None


@dataclass
class Session:
    """A connection with views over one dataset, and what the views were built from."""

    con: duckdb.DuckDBPyConnection
    dataset: Dataset
    shape: DatasetShape
    on_sql: Callable[[str, list], None] | None = None
    """Called with every statement a query runs through ``execute`` (``--show-sql``)."""

    def execute(self, sql: str, params: list | None = None) -> duckdb.DuckDBPyConnection:
        """Run a query statement, telling ``on_sql`` first: what ``--show-sql`` prints is
        what ran."""
        if self.on_sql is not None:
            self.on_sql(sql, list(params or []))
        return self.con.execute(sql, params or [])

    @property
    def dim(self) -> int:
        return self.shape.dim

    def close(self) -> None:
        self.con.close()


def open_session(dataset: DatasetArg = None, threads: int | None = None,
                 extensions: tuple[str, ...] | None = None, read_only: bool = False) -> Session:
    """A Session over ``dataset``. By default only what the dataset needs is loaded (spatial,
    plus httpfs for remote sources), which keeps one-shot commands quick; ``connect`` loads
    every extension (spatial, vss, httpfs). ``read_only``: once the views exist, DuckDB may
    read the dataset's own files and nothing else (no COPY TO, ATTACH, other files)."""
    ds = resolve(dataset)
    if extensions is None:
        extensions = ("spatial", "httpfs") if ds.remote else ("spatial",)
    con = new_connection(extensions=extensions, threads=threads)
    try:
        shape = create_views(con, ds)
        if read_only:
            lock_down(con, ds)
    except BaseException:
        con.close()
        raise
    return Session(con=con, dataset=ds, shape=shape)


def lock_down(con: duckdb.DuckDBPyConnection, dataset: Dataset) -> None:
    """Turn external access off except for the dataset's own sources (irreversible)."""
    local = [str(Path(f).resolve()) for f in dataset.local_files] + [
        str(f) for f in dataset.local_files]
    remote = [s.rsplit("/", 1)[0] + "/" for s in dataset.sources if "://" in s]
    con.execute("SET allowed_paths = ?", [local])
    if remote:
        con.execute("SET allowed_directories = ?", [remote])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def connect(dataset: DatasetArg = None, threads: int | None = None,
            read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views ``embeddings``, ``acquisitions`` and ``cells`` over
    ``dataset`` (a path, directory, glob, list, URL or catalog name; default ``demo``)."""
    return open_session(dataset, threads, extensions=EXTENSIONS, read_only=read_only).con


@contextlib.contextmanager
def session_of(dataset: DatasetArg | Session) -> Iterator[Session]:
    """``dataset`` as a session for the length of a ``with``: an open ``Session`` is reused
    (and left open), anything else is opened and closed after."""
    if isinstance(dataset, Session):
        yield dataset
        return
    s = open_session(dataset)
    try:
        yield s
    finally:
        s.close()
