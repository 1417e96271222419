"""The one DuckDB connection factory: spatial, vss and httpfs loaded from the installed
``duckdb-extension-*`` packages (no network), DuckDB's own INSTALL only as a fallback."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import duckdb

from mtquery.errors import DataError

EXTENSIONS = ("spatial", "vss", "httpfs")


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
    """A DuckDB connection with the given extensions loaded."""
    con = duckdb.connect(database)
    for name in extensions:
        load_extension(con, name)
    if threads:
        con.execute("SET threads = ?", [int(threads)])
    return con


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """A one-line description of a DuckDB error for a user."""
    return _first_line(exc)
