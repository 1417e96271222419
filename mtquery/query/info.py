"""``mtquery info``: what a dataset holds (rows, dimension, extent, time range, files, bytes).

The dimension is checked over every row, not just the first: a fixed-size list has one by
type; for a variable-length list the Parquet footers' value counts must equal rows x dim in
every row group (no data read), and only when they do not are the lengths counted, and more
than one length is a DataError naming them.

A remote dataset is described from its Parquet footers alone (``remote_info``): no column
data is read, so the count of grid cells is left out.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from mtquery.errors import DataError, MTQueryError
from mtquery.io.columns import Roles
from mtquery.io.datasets import Dataset
from mtquery.io.embmeta import file_block, of_files
from mtquery.io.manifests import GenerationManifest
from mtquery.query.search import run
from mtquery.query.session import Session

FILES_SQL = ("SELECT count(*) AS files, sum(num_rows) AS rows, sum(file_size_bytes) AS bytes\n"
             "FROM parquet_file_metadata(getvariable('mtquery_sources'))")
GEO_SQL = ("SELECT decode(value) AS geo\n"
           "FROM parquet_kv_metadata(getvariable('mtquery_sources'))\n"
           "WHERE decode(key) = 'geo'")
EXTENT_SQL = ("SELECT min(ST_XMin(geometry)) AS xmin, min(ST_YMin(geometry)) AS ymin,\n"
              "  max(ST_XMax(geometry)) AS xmax, max(ST_YMax(geometry)) AS ymax\n"
              "FROM embeddings")
TIME_SQL = ("SELECT min(acquired_at) AS start, max(acquired_at) AS \"end\",\n"
            "  count(DISTINCT grid_cell) AS cells FROM embeddings")
#: leaf value counts of the embedding column per row group (footers only)
VALUES_SQL = ("SELECT row_group_num_rows AS n_rows, num_values AS n_values\n"
              "FROM parquet_metadata(getvariable('mtquery_sources'))\n"
              "WHERE path_in_schema LIKE {column} || ',%'")
#: rows per vector length, with an example (reads the embedding column)
LENGTHS_SQL = ("SELECT len({flat}) AS dim, count(*) AS n, min({example}) AS example,\n"
               "  min(filename) AS file\n"
               "FROM read_parquet(getvariable('mtquery_sources'), filename = true, "
               "file_row_number = true)\n"
               "WHERE {column} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1")


def embedding_dims(session: Session) -> dict[int, int]:
    """{vector length: rows} over every row; DataError when there is more than one length
    (the session's dimension comes from the first vector of each file only)."""
    from mtquery.io.derive import ident

    column = session.shape.roles.vector
    dtype = session.shape.vector_type.replace(" ", "")
    lengths = re.findall(r"\[(\d*)\]", dtype)
    dim = session.dim
    if lengths and lengths[-1]:  # fixed-size list: one length by type
        return {dim: int(run(session, FILES_SQL).to_pylist()[0]["rows"] or 0)}
    groups = run(session, VALUES_SQL.format(column="?"), [column]).to_pylist()
    if groups and all(g["n_values"] == g["n_rows"] * dim for g in groups):
        return {dim: sum(int(g["n_rows"]) for g in groups)}
    flat = f"flatten({ident(column)})" if len(lengths) == 2 else ident(column)
    roles = session.shape.roles
    example = f"CAST({ident(roles.id)} AS VARCHAR)" if roles.id else "file_row_number"
    label = roles.id or "row"
    rows = run(session, LENGTHS_SQL.format(flat=flat, column=ident(column),
                                           example=example)).to_pylist()
    dims = {int(r["dim"]): int(r["n"]) for r in rows if r["dim"] is not None}
    if len(dims) > 1:
        detail = ", ".join(
            f"{r['dim']} ({r['n']:,} rows" + (f", e.g. {label} {r['example']} in {r['file']})"
                                               if i else ")")
            for i, r in enumerate(rows))
        raise DataError(f"mixed embedding dimensions: {detail}; every vector must have the "
                        "same length (mtquery validate lists the files)")
    return dims or {dim: 0}


def _bbox_from_metadata(session: Session, n_files: int) -> list[float] | None:
    """Union of the files' GeoParquet ``bbox`` entries, when every file has one."""
    boxes = []
    for row in run(session, GEO_SQL).to_pylist():
        try:
            box = json.loads(row["geo"])["columns"]["geometry"]["bbox"]
        except (KeyError, TypeError, ValueError):
            return None
        if len(box) != 4:
            return None
        boxes.append(box)
    if len(boxes) != n_files or not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


def manifest_of(session: Session) -> GenerationManifest | None:
    """The generation manifest of a local dataset's directory, if any: ``_mtquery/manifest.json``
    (``manifest.json`` beside the files in outputs of older versions)."""
    parents = {Path(f).parent for f in session.dataset.local_files}
    if len(parents) != 1:
        return None
    parent = parents.pop()
    path = next((p for p in (parent / "_mtquery" / "manifest.json", parent / "manifest.json")
                 if p.is_file()), None)
    if path is None:
        return None
    return GenerationManifest.read(path)  # another version or damaged: one line, rebuild


def _stat_time(value: object) -> str | None:
    from mtquery.query.filters import parse_time

    try:
        return parse_time(str(value))[0].isoformat() if value is not None else None
    except (MTQueryError, ValueError, OverflowError):
        return None


def remote_info(dataset: Dataset, dim: int | None = None) -> dict | None:
    """``dataset_info`` of a remote dataset from its Parquet footers alone: rows, files and
    bytes; the dimension from the schema or the value counts (``dim`` when the footers cannot
    tell); the extent from the GeoParquet bbox of every file, else the row-group statistics of
    the fragment centres; the time range from the statistics of ``timestamp``. None for
    sources that cannot be read by range (s3://...)."""
    from mtquery.io.cost import footers_of
    from mtquery.io.remote import check_footers

    footers = footers_of(dataset)
    if footers is None:
        return None
    dim = check_footers(footers) or dim
    if dim is None:
        from mtquery.query.session import open_session

        with contextlib.closing(open_session(dataset)) as s:
            dim = s.dim
    from mtquery.io.roles import roles_of

    roles = roles_of(dataset)
    groups = [g for f in footers for g in f.row_groups]
    boxes = [((f.geo or {}).get("columns", {}).get("geometry") or {}).get("bbox")
             for f in footers] if roles.standard or not roles.crs else [None]
    if boxes and all(isinstance(b, list) and len(b) == 4 for b in boxes):
        bbox, source = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                        max(b[2] for b in boxes), max(b[3] for b in boxes)], "geo metadata"
    else:
        def stat(col: str, i: int, pick):
            vals = [g.stats[col][i] for g in groups if col in g.stats]
            return float(pick(vals)) if vals and len(vals) == len(groups) else None
        bbox = [stat("centre_lon", 0, min), stat("centre_lat", 0, min),
                stat("centre_lon", 1, max), stat("centre_lat", 1, max)]
        source = "fragment centres (row-group statistics)"
        if not roles.standard:  # a file of another shape: its centres are derived
            bbox, source = [None] * 4, "not in the footers (derived centres)"
    times = [g.stats["timestamp"] for g in groups if "timestamp" in g.stats
             and (roles.standard or roles.time == "timestamp")]
    full = bool(times) and len(times) == len(groups)
    return {
        "dataset": dataset.name,
        "description": dataset.entry.description if dataset.entry else None,
        "sources": [f.source for f in footers],
        "files": len(footers),
        "bytes": sum(f.size for f in footers),
        "rows": sum(f.rows for f in footers),
        "dim": dim,
        "bbox": bbox,
        "start": _stat_time(min(t[0] for t in times)) if full else None,
        "end": _stat_time(max(t[1] for t in times)) if full else None,
        "grid_cells": None,  # not in the footers: counting them reads every row
        "bbox_covering": all("bbox" in f.schema.names for f in footers),
        "row_groups": len(groups),
        "extent_from": source,
        "read": f"footers only ({sum(len(f.footer) for f in footers):,} bytes)",
        **embedding_entry([file_block(f.source, f.schema.metadata or {}) for f in footers]),
        **roles_entry(roles),
    }


def dataset_info(session: Session) -> dict:
    """Rows, dimension, bbox [min_lon, min_lat, max_lon, max_lat], start/end, files, bytes.
    Remote data: from the Parquet footers alone (``remote_info``)."""
    info = remote_info(session.dataset, session.dim) if session.dataset.remote else None
    if info is not None:
        return info
    files = run(session, FILES_SQL).to_pylist()[0]
    roles = session.shape.roles
    bbox = (_bbox_from_metadata(session, int(files["files"] or 0))
            if roles.standard or (roles.geometry == "geometry" and not roles.crs) else None)
    if bbox is None:
        ext = run(session, EXTENT_SQL).to_pylist()[0]
        bbox = [ext["xmin"], ext["ymin"], ext["xmax"], ext["ymax"]]
    times = run(session, TIME_SQL).to_pylist()[0]
    embedding_dims(session)  # DataError on a ragged column: no single dimension to report
    ds = session.dataset
    info = {
        "dataset": ds.name,
        "description": ds.entry.description if ds.entry else None,
        "sources": list(ds.sources),
        "files": int(files["files"] or 0),
        "bytes": int(files["bytes"] or 0),
        "rows": int(files["rows"] or 0),
        "dim": session.dim,
        "bbox": bbox,
        "start": times["start"].isoformat() if times["start"] else None,
        "end": times["end"].isoformat() if times["end"] else None,
        "grid_cells": int(times["cells"] or 0),
        "bbox_covering": session.shape.has_bbox,
    }
    info.update(embedding_entry([file_block(str(f)) for f in ds.local_files]))
    manifest = manifest_of(session)
    if manifest is not None:
        info["model"] = manifest.model
    info.update(roles_entry(session.shape.roles))
    return info


def roles_entry(roles: Roles) -> dict:
    """The column roles used and what was derived (nothing for a standard file)."""
    if roles.standard:
        return {}
    return {"columns": roles.mapping(), "derived": list(roles.derived),
            "notices": list(roles.notices)}


def embedding_entry(blocks: list[dict | None]) -> dict:
    """The ``embedding`` entry of the info: the files' embedding metadata block
    (``mtquery.io.embmeta``; None when they carry none), with ``embedding_note`` when not
    every file carries the same one."""
    blk, note = of_files(blocks)
    return {"embedding": blk, **({"embedding_note": note} if note else {})}
