"""Labelled patch benchmarks -> standard embedding GeoParquet + label file.

* BigEarthNet (v1 S2 layout): one folder per patch holding ``<patch>_<band>.tif`` per band and
  ``<patch>_labels_metadata.json`` (CLC multi-labels, UTM ``coordinates``/``projection``,
  ``tile_source``, ``acquisition_date``). 20 m / 60 m bands are upsampled to the 10 m grid by
  nearest neighbour (pixel repetition). Bands the model takes but the patch lacks (B10 in L2A)
  are filled with zeros and named in the output's metadata.
* EuroSAT (MS layout): ``<root>/<ClassName>/*.tif``, 13-band GeoTIFFs in the order
  B01..B08, B8A, B09, B10, B11, B12; the class folder is the label. No acquisition date is
  known: ``timestamp`` is written empty.

Patches are embedded with :func:`mtquery.generate.embed_patches` (one fragment per patch, so
``pixel_bbox`` = [0, 0, h, w]); the label file holds ``unique_id`` and ``labels`` (a list), for
``join="unique_id"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.errors import DataError, UsageError
from mtquery.io.embmeta import block, with_block
from mtquery.io.fsio import atomic_path

EUROSAT_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                 "B11", "B12")
KINDS = ("bigearthnet", "eurosat")


def _upsample(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size and a.shape[1] == size:
        return a
    f = size // a.shape[0]
    if f < 1 or a.shape[0] * f != size or a.shape[1] * f != size:
        raise DataError(f"band of shape {a.shape} does not divide the {size} px grid")
    return np.repeat(np.repeat(a, f, axis=0), f, axis=1)


def read_bigearthnet(root: str | Path, bands: tuple[str, ...], limit: int | None = None
                     ) -> tuple[np.ndarray, list[dict]]:
    """(n, bands, h, w) uint16 DN and one metadata dict per patch, patches sorted by name."""
    import rasterio

    root = Path(root)
    metas = sorted(root.rglob("*_labels_metadata.json"))
    if not metas:
        raise DataError(f"no BigEarthNet patches (*_labels_metadata.json) under {root}")
    if limit:
        metas = metas[:limit]
    images, infos = [], []
    for mp in metas:
        name = mp.name[: -len("_labels_metadata.json")]
        meta = json.loads(mp.read_text())
        arrays: dict[str, np.ndarray] = {}
        for b in bands:
            f = mp.parent / f"{name}_{b}.tif"
            if f.is_file():
                with rasterio.open(f) as src:
                    arrays[b] = src.read(1)
        if not arrays:
            raise DataError(f"{mp.parent}: none of the bands {','.join(bands)} found")
        size = max(a.shape[0] for a in arrays.values())
        missing = [b for b in bands if b not in arrays]
        stack = np.stack([_upsample(arrays[b], size) if b in arrays else
                          np.zeros((size, size), np.uint16) for b in bands])
        images.append(stack)
        c = meta["coordinates"]
        infos.append({"name": name, "labels": list(meta["labels"]), "crs_wkt": meta["projection"],
                      "bounds": (c["ulx"], c["lry"], c["lrx"], c["uly"]),
                      "timestamp": meta.get("acquisition_date", ""),
                      "product_id": meta.get("tile_source", name), "missing_bands": missing,
                      "size": size})
    return np.stack(images), infos


def read_eurosat(root: str | Path, bands: tuple[str, ...], limit: int | None = None
                 ) -> tuple[np.ndarray, list[dict]]:
    import rasterio

    root = Path(root)
    classes = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    files = [(c.name, f) for c in classes for f in sorted(c.glob("*.tif"))]
    if not files:
        raise DataError(f"no EuroSAT class folders of .tif files under {root}")
    if limit:
        files = files[:limit]
    missing = [b for b in bands if b not in EUROSAT_BANDS]
    if missing:
        raise UsageError(f"EuroSAT has no band(s) {','.join(missing)}")
    pick = [EUROSAT_BANDS.index(b) for b in bands]
    images, infos = [], []
    for label, f in files:
        with rasterio.open(f) as src:
            if src.count != 13:
                raise DataError(f"{f}: {src.count} bands, EuroSAT MS has 13")
            a = src.read()
            if src.crs is None:
                raise DataError(f"{f}: no CRS; EuroSAT MS GeoTIFFs are georeferenced")
            b = src.bounds
            infos.append({"name": f.stem, "labels": [label], "crs_wkt": src.crs.to_wkt(),
                          "bounds": (b.left, b.bottom, b.right, b.top), "timestamp": "",
                          "product_id": f"EuroSAT/{label}/{f.name}", "missing_bands": [],
                          "size": a.shape[1]})
        images.append(a[pick])
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"EuroSAT patches of different shapes: {sorted(shapes)[:3]}")
    return np.stack(images), infos


def _table(infos: list[dict], X: np.ndarray, model: str) -> pa.Table:
    import shapely
    from pyproj import CRS, Transformer
    from shapely.geometry import box

    from mtquery.standard.grid import latlon_to_cell, latlon_to_rowcol
    from mtquery.standard.ids import unique_ids
    from mtquery.standard.schema import arrow_schema, embedding_array, with_geo_metadata

    geoms, utm_wkt, utm_crs = [], [], []
    for info in infos:
        crs = CRS.from_wkt(info["crs_wkt"])
        epsg = crs.to_epsg()
        utm = box(*info["bounds"])
        tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        geoms.append(shapely.transform(
            utm, lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))))
        utm_wkt.append(shapely.to_wkt(utm, rounding_precision=-1))
        utm_crs.append(f"EPSG:{epsg}" if epsg else crs.to_string())
    cent = shapely.centroid(np.array(geoms, dtype=object))
    lat = shapely.get_y(cent)
    lon = shapely.get_x(cent)
    cells = latlon_to_cell(lat, lon)
    rows, cols = latlon_to_rowcol(lat, lon)
    ts = [str(i["timestamp"]) for i in infos]
    pids = [str(i["product_id"]) for i in infos]
    ids = unique_ids(geoms, ts, pids, X)
    schema = arrow_schema(X.shape[1])
    data = {
        "unique_id": pa.array(ids, pa.string()),
        "embedding": embedding_array(X),
        "timestamp": pa.array(ts, pa.string()),
        "product_id": pa.array(pids, pa.string()),
        "grid_cell": pa.array(np.asarray(cells).astype(str).tolist(), pa.string()),
        "grid_row_u": pa.array(np.asarray(rows).astype(np.int16)),
        "grid_col_r": pa.array(np.asarray(cols).astype(np.int16)),
        "geometry": pa.array(list(shapely.to_wkb(np.array(geoms, dtype=object))), pa.binary()),
        "centre_lat": pa.array(lat.astype(np.float32)),
        "centre_lon": pa.array(lon.astype(np.float32)),
        "utm_footprint": pa.array(utm_wkt, pa.string()),
        "utm_crs": pa.array(utm_crs, pa.string()),
        "pixel_bbox": pa.array([[0, 0, i["size"], i["size"]] for i in infos],
                               pa.list_(pa.int64())),
    }
    table = pa.Table.from_arrays([data[f.name] for f in schema], schema=schema)
    bounds = shapely.total_bounds(np.array(geoms, dtype=object)).tolist()
    table = with_geo_metadata(table, bounds)
    meta = dict(table.schema.metadata or {})
    missing = sorted({b for i in infos for b in i["missing_bands"]})
    meta[b"mtquery"] = json.dumps({"model": model, "source": "eval.adapters",
                                   "bands_filled_with_zero": missing}).encode()
    # the embedding metadata block (docs/metadata.md); grid_cell is the 10 km cell of the centre
    blk = block(int(X.shape[1]), "float32", model=model, normalisation="none")
    return table.replace_schema_metadata(with_block(pa.schema([], metadata=meta), blk).metadata)


def embed_benchmark(kind: str, root: str | Path, *, model: str = "spectral", output: str | Path,
                    labels_out: str | Path, weights: str | None = None,
                    device: str | None = None, batch_size: int = 64,
                    limit: int | None = None) -> dict:
    """Embed a benchmark and write ``output`` (embedding GeoParquet) and ``labels_out``."""
    from mtquery.generate import embed_patches, get_model_spec

    if kind not in KINDS:
        raise UsageError(f"unknown benchmark {kind!r}; choose one of {', '.join(KINDS)}", "kind")
    spec = get_model_spec(model)
    if kind == "bigearthnet":
        images, infos = read_bigearthnet(root, tuple(spec.bands), limit)
    else:
        images, infos = read_eurosat(root, tuple(spec.bands), limit)
    X = embed_patches(model, images, weights=weights, device=device, batch_size=batch_size)
    X = np.asarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise DataError(f"model {model} produced NaN/inf vectors")
    table = _table(infos, X, model)
    labels = pa.table({"unique_id": table.column("unique_id"),
                       "labels": pa.array([i["labels"] for i in infos],
                                          pa.list_(pa.string())),
                       "patch": pa.array([i["name"] for i in infos], pa.string())})
    with atomic_path(output) as tmp_e, atomic_path(labels_out) as tmp_l:
        pq.write_table(table, tmp_e)
        pq.write_table(labels, tmp_l)
    classes = sorted({c for i in infos for c in i["labels"]})
    return {"patches": len(infos), "dim": int(X.shape[1]), "classes": classes,
            "missing_bands": sorted({b for i in infos for b in i["missing_bands"]})}
