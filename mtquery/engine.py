"""``connect``: a DuckDB connection with the dataset's views, and the Session that carries it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mtquery.datasets import Dataset, resolve
from mtquery.duck import EXTENSIONS, new_connection
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


def open_session(dataset: DatasetArg = None, threads: int | None = None,
                 extensions: tuple[str, ...] | None = None) -> Session:
    """A Session over ``dataset``. By default only what the dataset needs is loaded (spatial,
    plus httpfs for remote sources), which keeps one-shot commands quick; ``connect`` loads
    every extension (spatial, vss, httpfs)."""
    ds = resolve(dataset)
    if extensions is None:
        extensions = ("spatial", "httpfs") if ds.remote else ("spatial",)
    con = new_connection(extensions=extensions, threads=threads)
    try:
        shape = create_views(con, ds)
    except BaseException:
        con.close()
        raise
    return Session(con=con, dataset=ds, shape=shape)


def connect(dataset: DatasetArg = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views ``embeddings``, ``acquisitions`` and ``cells`` over
    ``dataset`` (a path, directory, glob, list, URL or catalog name; default ``demo``)."""
    return open_session(dataset, threads, extensions=EXTENSIONS).con
