"""``mtquery stac``: a STAC catalogue of a dataset, so a catalogue can list it.

The output folder holds ``collection.json`` (a STAC 1.1 Collection) and ``items/NAME.json``,
one Item per data file, with the fields of the draft STAC embeddings extension
(``mtquery.io.embmeta.EXTENSION``) taken from the files' embedding metadata block:

- Collection: ``emb:type``, ``emb:dimensions``, ``data_type``, ``emb:chip_layout`` (the
  Major TOM grid), the ``mtquery:`` fields (vector column, model and weights, column roles),
  the spatial and temporal extent of all files, ``item_assets``, an ``emb:model`` link when
  the model is in the generator's registry with a download address;
- Item: the file's bbox and footprint (its GeoParquet ``bbox``, else its rows' geometries),
  its time range (``start_datetime`` / ``end_datetime``; ``datetime`` too when one instant),
  ``data_type``, ``emb:postprocessing`` (the normalisation), row count, and the asset
  ``embeddings`` pointing at the file: a path relative to the Item for local files, the URL
  (``hf://`` as its https download address) for remote ones.

Links are relative (``root`` / ``parent`` / ``collection`` / ``item``), so the folder can be
moved or served as it is; ``base_url`` adds absolute ``self`` links for a published copy.
A file with no acquisition time gets the time it was written as ``datetime`` (STAC requires
one), said in ``mtquery:datetime_from``. The folder is written in staging and published by
one rename; an existing non-empty folder is replaced only with ``force``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.embmeta import EXTENSION, Origin, describe, dtype_name, file_block, of_files
from mtquery.io.embmeta import known_model as model_of_files
from mtquery.io.staging import discard, new_staging, publish, tidy

STAC_VERSION = "1.1.0"
PARQUET = "application/vnd.apache.parquet"
#: fields of the block that describe the whole collection (the extension's collection fields)
COLLECTION_FIELDS = ("emb:type", "emb:dimensions", "data_type", "emb:chip_layout")
#: fields of the block that may stand in an Item's properties
ITEM_FIELDS = ("data_type", "emb:postprocessing")
FILES_SQL = ("SELECT source_file AS file, count(*) AS rows,\n"
             "  min(ST_XMin(geometry)) AS xmin, min(ST_YMin(geometry)) AS ymin,\n"
             "  max(ST_XMax(geometry)) AS xmax, max(ST_YMax(geometry)) AS ymax,\n"
             "  min(acquired_at) AS start, max(acquired_at) AS \"end\"\n"
             "FROM embeddings GROUP BY source_file")


def check_output(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder without ``force``, before any work."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} is a file; give a folder for the catalogue", "output")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"output {out} exists and is not empty; give --force to replace it "
                         "(or choose a new folder)", "output")


def stac(dataset: Dataset | str | Path | list, out: str | Path, *, force: bool = False,
         license: str = "other", collection_id: str | None = None,
         base_url: str | None = None) -> pa.Table:
    """Write a STAC Collection and one Item per data file of ``dataset`` into folder ``out``
    (new or empty; replaced when ``force``). Returns the Items written: id, file (the
    asset's href), rows, start_datetime, end_datetime, bbox, item (path under ``out``).

    ``license``: the Collection's SPDX license (default ``other``); ``collection_id``:
    default from the dataset's name; ``base_url``: where the folder will be published
    (adds absolute ``self`` links)."""
    out = Path(out)
    check_output(out, force)
    ds = resolve(dataset)
    files = _stats(ds)
    if not files:
        raise DataError(f"{ds.name}: no data file to describe")
    cid = collection_id or _slug(Path(ds.name.rstrip("/")).name or ds.name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cid):
        raise UsageError(f"collection id {cid!r} must be letters, digits, '.', '_' or '-'",
                         "collection_id")
    blk = _collection_block(ds, files)
    out_abs = out.resolve()
    out_abs.parent.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/") + "/" if base_url else None
    ids = _ids([f["source"] for f in files])
    written = dt.datetime.now(dt.timezone.utc)
    items = [_item(f, i, cid, blk, out_abs, base, written) for f, i in zip(files, ids)]
    collection = _collection(ds, cid, blk, items, files, license, base)
    stage = new_staging(out_abs.parent, out_abs.name)
    try:
        (stage / "items").mkdir()
        for item in items:
            _write(stage / "items" / f"{item['id']}.json", item)
        _write(stage / "collection.json", collection)
        publish(stage, out_abs, on_exists="replace" if force else "error", name=out)
    except BaseException:
        discard(stage)
        raise
    tidy(out_abs.parent)
    return pa.table({
        "id": [i["id"] for i in items],
        "file": [i["assets"]["embeddings"]["href"] for i in items],
        "rows": pa.array([f["rows"] for f in files], pa.int64()),
        "start_datetime": [i["properties"].get("start_datetime") for i in items],
        "end_datetime": [i["properties"].get("end_datetime") for i in items],
        "bbox": pa.array([i.get("bbox") for i in items], pa.list_(pa.float64())),
        "item": [f"items/{i['id']}.json" for i in items],
    })


# ---------------------------------------------------------------- what each file holds


def _stats(ds: Dataset) -> list[dict]:
    """Per data file: source, local (bool), rows, bbox, start, end, block, dtype, column,
    roles (those mtquery reads a file of another shape with)."""
    if ds.remote:
        return _remote_stats(ds)
    import pyarrow.parquet as pq

    from mtquery.query.search import run
    from mtquery.query.session import open_session

    session = open_session(ds)
    try:
        roles = session.shape.roles
        column = roles.vector
        read_with = None if roles.standard else roles.mapping()
        by_file = {str(Path(r["file"]).resolve()): r
                   for r in run(session, FILES_SQL).to_pylist()}
    finally:
        session.close()
    out = []
    for f in ds.local_files:
        path = Path(f).resolve()
        schema = pq.read_schema(path)
        blk = file_block(str(path), schema.metadata or {})
        r = by_file.get(str(path), {})
        box = _geo_bbox(schema.metadata) or (
            [r["xmin"], r["ymin"], r["xmax"], r["ymax"]] if r.get("xmin") is not None else None)
        col = blk["mtquery:column"] if blk else column
        out.append({"source": str(path), "local": True, "rows": int(r.get("rows") or 0),
                    "bbox": box, "start": _utc(r.get("start")), "end": _utc(r.get("end")),
                    "block": blk, "column": col,
                    "dtype": _dtype(schema, col), "dim": None, "roles": read_with,
                    "mtime": dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)})
    return out


def _remote_stats(ds: Dataset) -> list[dict]:
    """Per remote file, from its Parquet footer alone (``mtquery.query.info.remote_info``)."""
    from mtquery.io.cost import footers_of
    from mtquery.query.info import remote_info

    footers = footers_of(ds)
    if footers is None:
        raise DataError(f"{ds.spec}: stac describes local files, http(s):// and hf:// files "
                        "(their footers); download the others first", "dataset")
    out = []
    for f in footers:
        info = remote_info(resolve(f.source))
        if info is None:
            raise DataError(f"{f.source}: cannot read its footer by range", "dataset")
        blk = info.get("embedding")
        col = blk["mtquery:column"] if blk else "embedding"
        box = info["bbox"] if info["bbox"] and None not in info["bbox"] else None
        out.append({"source": f.source, "local": False, "rows": info["rows"], "bbox": box,
                    "start": _utc(info["start"]), "end": _utc(info["end"]), "block": blk,
                    "column": col, "dtype": _dtype(f.schema, col), "dim": info["dim"],
                    "roles": None, "mtime": None})
    return out


def _dtype(schema: pa.Schema, column: str) -> str | None:
    if column not in schema.names:
        return None
    try:
        return dtype_name(schema.field(column).type)
    except DataError:
        return None


def _geo_bbox(metadata: dict | None) -> list[float] | None:
    """The primary geometry's ``bbox`` of a file's GeoParquet metadata, when it has one in
    lon/lat (no CRS, or OGC:CRS84 / EPSG:4326)."""
    try:
        geo = json.loads((metadata or {})[b"geo"])
        col = geo["columns"][geo.get("primary_column", "geometry")]
        box = [float(v) for v in col["bbox"]]
    except (KeyError, TypeError, ValueError):
        return None
    crs = col.get("crs")
    if crs is not None:
        ident = (crs.get("id") or {}) if isinstance(crs, dict) else {}
        if (ident.get("authority"), str(ident.get("code"))) not in (
                ("OGC", "CRS84"), ("EPSG", "4326")):
            return None
    return box if len(box) == 4 else None


def _utc(value: object) -> str | None:
    """An RFC 3339 UTC time (``...Z``) of a timestamp (naive: UTC) or ISO text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # one width: text order is time order


def _collection_block(ds: Dataset, files: list[dict]) -> dict:
    """The block describing the whole dataset: the files' own when they share one, else
    one from the vectors' dimension and type and the model mtquery knows."""
    blocks = [f["block"] for f in files]
    blk, note = of_files(blocks)
    if blk is not None and note is None:
        return blk
    dim = next((f["dim"] for f in files if f["dim"]), None)
    if dim is None:
        from mtquery.query.session import open_session

        session = open_session(ds)
        try:
            dim = session.dim
        finally:
            session.close()
    dtype = next((f["dtype"] for f in files if f["dtype"]), "float32")
    model, weights = model_of_files(ds.local_files, ds.entry.model if ds.entry else None)
    # a dataset of another shape: the roles mtquery reads it with
    return Origin(tuple(blocks), model, weights, files[0]["roles"]).block(
        dim, dtype, files[0]["column"])


# ---------------------------------------------------------------- the JSON


def _slug(text: str) -> str:
    text = re.sub(r"\.(parquet|gpq|geoparquet)$", "", text)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "dataset"


def _ids(sources: list[str]) -> list[str]:
    """Item ids from the file names (unique: a clash gets the folder's name, then a number)."""
    names = [_slug(s.rstrip("/").rsplit("/", 1)[-1]) for s in sources]
    out, seen = [], set()
    for s, n in zip(sources, names):
        if names.count(n) > 1:
            parent = s.rstrip("/").rsplit("/", 2)
            n = _slug(f"{parent[-2]}-{n}") if len(parent) > 2 else n
        base, k = n, 1
        while n in seen:
            k += 1
            n = f"{base}-{k}"
        seen.add(n)
        out.append(n)
    return out


def _href(f: dict, out: Path) -> str:
    if f["local"]:
        return Path(os.path.relpath(f["source"], out / "items")).as_posix()
    if f["source"].startswith("hf://"):
        from mtquery.io.rangefile import hf_url

        return hf_url(f["source"])
    return f["source"]


def _polygon(box: list[float]) -> dict:
    x0, y0, x1, y1 = box
    return {"type": "Polygon",
            "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _mtquery_fields(blk: dict, rows: int | None = None) -> dict:
    d = describe(blk)
    out: dict = {"mtquery:column": d["column"]}
    if "mtquery:model" in blk:
        out["mtquery:model"] = blk["mtquery:model"]
    if d["roles"]:
        out["mtquery:roles"] = d["roles"]
    if rows is not None:
        out["mtquery:rows"] = rows
    return out


def _item(f: dict, item_id: str, cid: str, collection_blk: dict, out: Path,
          base: str | None, written: dt.datetime) -> dict:
    blk = f["block"] or collection_blk
    props: dict = {}
    if f["start"] is not None and f["end"] is not None:
        props["datetime"] = f["start"] if f["start"] == f["end"] else None
        props["start_datetime"], props["end_datetime"] = f["start"], f["end"]
    elif f["start"] is not None or f["end"] is not None:  # one end unknown (statistics)
        props["datetime"] = f["start"] or f["end"]
        props["mtquery:datetime_from"] = ("the first acquisition (the last is not known)"
                                          if f["start"] else
                                          "the last acquisition (the first is not known)")
    else:  # STAC requires a time: when the file was written
        when = f["mtime"] or written
        props["datetime"] = _utc(when)
        props["mtquery:datetime_from"] = ("file modification time" if f["mtime"] else
                                          "catalogue written (no acquisition time)")
    props.update({k: blk[k] for k in ITEM_FIELDS if k in blk})
    props.update(_mtquery_fields(blk, f["rows"]))
    links = [{"rel": rel, "href": "../collection.json", "type": "application/json"}
             for rel in ("root", "parent", "collection")]
    if base:
        links.append({"rel": "self", "href": f"{base}items/{item_id}.json",
                      "type": "application/geo+json"})
    box = f["bbox"]
    item = {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [EXTENSION],
            "id": item_id, "collection": cid,
            "geometry": _polygon(box) if box else None}
    if box:
        item["bbox"] = [float(v) for v in box]
    item.update({"properties": props, "links": links,
                 "assets": {"embeddings": {"href": _href(f, out), "type": PARQUET,
                                           "roles": ["data"],
                                           "title": f["source"].rsplit("/", 1)[-1]}}})
    return item


def _model_link(blk: dict) -> dict | None:
    """``emb:model``: the model's published weights, when it is a registry model."""
    name = describe(blk)["model"]
    if not name:
        return None
    try:
        from mtquery.generate.registry import REGISTRY
    except ImportError:  # pragma: no cover - the generator is part of the package
        return None
    spec = REGISTRY.get(name)
    if spec is None or not spec.weights_url:
        return None
    return {"rel": "emb:model", "href": spec.weights_url, "title": spec.weights_name or name}


def _collection(ds: Dataset, cid: str, blk: dict, items: list[dict], files: list[dict],
                license: str, base: str | None) -> dict:
    boxes = [i["bbox"] for i in items if i.get("bbox")]
    spatial = ([min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes)] if boxes
               else [-180.0, -90.0, 180.0, 90.0])
    times = [t for f in files for t in (f["start"], f["end"]) if t]  # acquisitions only
    interval = [min(times) if times else None, max(times) if times else None]
    links = [{"rel": "root", "href": "./collection.json", "type": "application/json"}]
    if base:
        links.append({"rel": "self", "href": f"{base}collection.json",
                      "type": "application/json"})
    links += [{"rel": "item", "href": f"./items/{i['id']}.json",
               "type": "application/geo+json"} for i in items]
    model = _model_link(blk)
    if model:
        links.append(model)
    core = ds.entry.core if ds.entry else None
    if core:  # the imagery the embeddings were made from (released datasets)
        href = core
        if core.startswith("hf://"):
            from mtquery.io.rangefile import hf_url

            href = hf_url(core)
        links.append({"rel": "emb:source-data", "href": href,
                      "type": PARQUET, "title": "Major TOM Core metadata of the imagery"})
    description = (ds.entry.description if ds.entry else None) or (
        f"Embeddings of {cid}, catalogued by mtquery")
    coll = {"type": "Collection", "stac_version": STAC_VERSION,
            "stac_extensions": [EXTENSION], "id": cid,
            "title": ds.entry.name if ds.entry else cid,
            "description": description, "license": license,
            "extent": {"spatial": {"bbox": [spatial]}, "temporal": {"interval": [interval]}}}
    coll.update({k: blk[k] for k in COLLECTION_FIELDS if k in blk})
    coll.update(_mtquery_fields(blk))
    coll["summaries"] = {k: [blk[k]] for k in ("emb:type", "emb:dimensions", "data_type")
                         if k in blk}
    coll["item_assets"] = {"embeddings": {"type": PARQUET, "roles": ["data"],
                                          "title": "Embedding GeoParquet"}}
    coll["links"] = links
    return coll


def _write(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
