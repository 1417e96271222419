"""``connect``: a DuckDB connection with the dataset's views, and the Session that carries it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mtquery.datasets import Dataset, resolve
from mtquery.duck import new_connection
from mtquery.views import DatasetShape, create_views

DatasetArg = str | Path | Sequence[str | Path] | Dataset | None


@dataclass
class Session:
    """A connection with views over one dataset, and what the views were built from."""

    con: duckdb.DuckDBPyConnection
    dataset: Dataset
    shape: DatasetShape

    @property
    def dim(self) -> int:
        return self.shape.dim

    def close(self) -> None:
        self.con.close()


def open_session(dataset: DatasetArg = None, threads: int | None = None) -> Session:
    ds = resolve(dataset)
    con = new_connection(threads=threads)
    try:
        shape = create_views(con, ds)
    except BaseException:
        con.close()
        raise
    return Session(con=con, dataset=ds, shape=shape)


def connect(dataset: DatasetArg = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views ``embeddings``, ``acquisitions`` and ``cells`` over
    ``dataset`` (a path, directory, glob, list, URL or catalog name; default ``demo``)."""
    return open_session(dataset, threads).con
