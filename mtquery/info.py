"""``mtquery info``: what a dataset holds (rows, dimension, extent, time range, files, bytes)."""

from __future__ import annotations

import json
from pathlib import Path

from mtquery.session import Session
from mtquery.search_sql import run

FILES_SQL = ("SELECT count(*) AS files, sum(num_rows) AS rows, sum(file_size_bytes) AS bytes\n"
             "FROM parquet_file_metadata(getvariable('mtquery_sources'))")
GEO_SQL = ("SELECT CAST(value AS VARCHAR) AS geo\n"
           "FROM parquet_kv_metadata(getvariable('mtquery_sources'))\n"
           "WHERE CAST(key AS VARCHAR) = 'geo'")
EXTENT_SQL = ("SELECT min(ST_XMin(geometry)) AS xmin, min(ST_YMin(geometry)) AS ymin,\n"
              "  max(ST_XMax(geometry)) AS xmax, max(ST_YMax(geometry)) AS ymax\n"
              "FROM embeddings")
TIME_SQL = ("SELECT min(acquired_at) AS start, max(acquired_at) AS \"end\",\n"
            "  count(DISTINCT grid_cell) AS cells FROM embeddings")


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


def manifest_of(session: Session) -> dict | None:
    """The generation manifest (``manifest.json``) next to a local dataset's files, if any."""
    parents = {Path(f).parent for f in session.dataset.local_files}
    if len(parents) != 1:
        return None
    path = parents.pop() / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def dataset_info(session: Session) -> dict:
    """Rows, dimension, bbox [min_lon, min_lat, max_lon, max_lat], start/end, files, bytes."""
    files = run(session, FILES_SQL).to_pylist()[0]
    bbox = _bbox_from_metadata(session, int(files["files"] or 0))
    if bbox is None:
        ext = run(session, EXTENT_SQL).to_pylist()[0]
        bbox = [ext["xmin"], ext["ymin"], ext["xmax"], ext["ymax"]]
    times = run(session, TIME_SQL).to_pylist()[0]
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
    manifest = manifest_of(session)
    if manifest:
        info["model"] = manifest.get("model")
    return info
