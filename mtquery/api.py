"""The Python API: what the command line does, as functions returning ``pyarrow.Table``.

Each takes ``dataset`` as anything ``mtquery.io.datasets.resolve`` accepts (path, directory,
glob, list, URL, catalog name; default ``$MTQUERY_DATASET`` or ``demo``) or an open
``Session`` (reused, not closed). Rows and columns equal the CLI's ``--format json`` output,
plus ``geometry`` (WKB) for the fragment footprint."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mtquery.query.filters import BBox, Filters
from mtquery.query.session import DatasetArg, Session, session_of
from mtquery.query.vector import QueryVector

if TYPE_CHECKING:
    from mtquery.io.chips import Chip

BBoxArg = str | Sequence[float] | BBox | None
TimeArg = str | dt.date | None


GEOMETRY_SQL = ("SELECT unique_id, ST_AsWKB(geometry) AS geometry FROM embeddings\n"
                "WHERE unique_id IN (SELECT unnest(CAST(? AS VARCHAR[])))")


def with_geometry(session: Session, table: pa.Table) -> pa.Table:
    """``table`` with a ``geometry`` column (WKB) looked up by unique_id."""
    from mtquery.query.search import run

    ids = table.column("unique_id").to_pylist()
    found = run(session, GEOMETRY_SQL, [ids]) if ids else None
    lookup = dict(zip(found.column("unique_id").to_pylist(),
                      found.column("geometry").to_pylist())) if found is not None else {}
    return table.append_column("geometry", pa.array([lookup.get(i) for i in ids],
                                                    pa.binary()))


def search(dataset: DatasetArg | Session = None, bbox: BBoxArg = None, start: TimeArg = None,
           end: TimeArg = None, cell: str | None = None, limit: int | None = 100,
           geometry: bool = True) -> pa.Table:
    """Fragments intersecting ``bbox`` (min_lon, min_lat, max_lon, max_lat) acquired in
    [``start``, ``end``] (UTC, inclusive) in grid ``cell``, by time, cell and id."""
    from mtquery.query.search import search as run_search

    filters = Filters.of(bbox, start, end, cell)
    with session_of(dataset) as s:
        table = run_search(s, filters, limit)
        return with_geometry(s, table) if geometry else table


def knn(dataset: DatasetArg | Session = None, *, lat: float | None = None,
        lon: float | None = None, id: str | None = None, ids: Sequence[str] | None = None,
        vector: np.ndarray | str | Path | None = None,
        not_ids: Sequence[str] | None = None, text: str | None = None,
        image: str | Path | None = None, model: str | None = None,
        weights: str | None = None, k: int = 10, bbox: BBoxArg = None,
        start: TimeArg = None, end: TimeArg = None, cell: str | None = None,
        include_self: bool = False, exact: bool = False, index: str | Path | None = None,
        geometry: bool = True) -> pa.Table:
    """The k fragments most similar (cosine) to the query: the fragment covering
    ``lat``/``lon``, the fragment ``id``, the mean direction of ``ids`` (minus half that of
    ``not_ids``), ``vector``, a ``text`` or an ``image`` (embedded with the dataset's model,
    or ``model`` / ``weights``);
    among those passing ``bbox`` / ``start`` / ``end`` / ``cell``."""
    from mtquery.query.filters import check_k
    from mtquery.query.knn import knn as run_knn
    from mtquery.query.resolve import resolve_query

    check_k(k)
    filters = Filters.of(bbox, start, end, cell)
    with session_of(dataset) as s:
        query = resolve_query(s, lat=lat, lon=lon, id=id, ids=ids, vector=vector,
                              not_ids=not_ids, text=text, image=image, model=model,
                              weights=weights)
        table = run_knn(s, query, k, filters, include_self, exact=exact, index=index)
        table = with_query(table, query)
        return with_geometry(s, table) if geometry else table


QUERY_KEY = b"mtquery.query"


def with_query(table: pa.Table, query: QueryVector) -> pa.Table:
    """``table`` with what it answers in its metadata (``query_of``): the fragment(s) the
    query came from, their cell and time."""
    import json

    meta = dict(table.schema.metadata or {})
    meta[QUERY_KEY] = json.dumps({
        "unique_id": query.unique_id, "grid_cell": query.grid_cell,
        "timestamp": query.timestamp, "source_ids": list(query.exclude_ids)}).encode()
    return table.replace_schema_metadata(meta)


def query_of(table: pa.Table) -> dict:
    """What a ``knn`` answer answers: unique_id, grid_cell, timestamp, source_ids (ids
    empty for a vector, text or image query)."""
    import json

    raw = (table.schema.metadata or {}).get(QUERY_KEY)
    return json.loads(raw) if raw else {"unique_id": None, "grid_cell": None,
                                        "timestamp": None, "source_ids": []}


def info(dataset: DatasetArg | Session = None) -> dict:
    """Rows, dimension, bbox, time range, grid cells, files and bytes of a dataset (of a
    remote one, from its Parquet footers alone)."""
    from mtquery.io.datasets import resolve
    from mtquery.query.info import dataset_info, remote_info

    if not isinstance(dataset, Session):
        dataset = resolve(dataset)
        found = remote_info(dataset) if dataset.remote else None
        if found is not None:
            return found
    with session_of(dataset) as s:
        return dataset_info(s)


def cell(lat: float, lon: float, dist: float = 10.0) -> pa.Table:
    """The Major TOM grid cell holding a point: name, row / column, bounds, UTM zone."""
    from mtquery.query.filters import check_lat, check_lon
    from mtquery.standard.grid import cell_of_point

    return cell_of_point(check_lat(lat), check_lon(lon), dist)


def change(dataset: DatasetArg | Session = None, *, before: str, after: str,
           bbox: BBoxArg = None, per_fragment: bool = False,
           limit: int | None = None) -> pa.Table:
    """Places ranked by how far their mean embedding moved from ``before`` to ``after``
    (periods ``START..END``, inclusive UTC dates); see ``mtquery.query.change``."""
    from mtquery.query.change import change as run_change

    with session_of(dataset) as s:
        return run_change(s, before, after, bbox, per_fragment, limit)


def align(dataset: DatasetArg | Session = None, *, other: str | Sequence[str],
          bbox: BBoxArg = None, limit: int | None = 1000, k: int = 10,
          vectors: bool = False) -> pa.Table:
    """The same fragments in ``dataset`` and another model's dataset ``other``, with the
    neighbour agreement of the two models; see ``mtquery.query.align``."""
    from mtquery.query.align import align as run_align

    with session_of(dataset) as s:
        return run_align(s, list(other) if not isinstance(other, str) else other, bbox,
                         limit, k, vectors)


def extract(dataset: DatasetArg = None, *, output: str | Path, bbox: BBoxArg = None,
            start: TimeArg = None, end: TimeArg = None, cell: str | None = None,
            index: bool = False, max_read: str | int | None = None,
            allow_full_scan: bool = False) -> dict:
    """Copy a region / time window of a (remote or local) dataset into ``output`` in the
    optimised layout, reading only the row groups it needs; see ``mtquery.io.extract``.
    Returns the manifest."""
    from mtquery.io.extract import extract as run_extract

    return run_extract(dataset, output, bbox, start, end, cell, index=index,
                       max_read=max_read, allow_full_scan=allow_full_scan)


def chip(dataset: DatasetArg | Session = None, unique_id: str = "", *,
         core: str | None = None) -> Chip | None:
    """The image of fragment ``unique_id`` (a ``mtquery.io.chips.Chip``: encoded bytes, media
    type, size, source), or None when the dataset's imagery is not reachable: its generated
    thumbnail, else the Major TOM Core thumbnail of its sample cropped to it (``core``: the
    Core ``metadata.parquet``, path or URL; default: the released set's own)."""
    from mtquery.io.chips import fragment_chip

    with session_of(dataset) as s:
        return fragment_chip(s, unique_id, core=core)
