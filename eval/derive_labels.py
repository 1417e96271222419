"""Derive labels for fragments from the real Sentinel-2 pixels they were made from, by a stated
rule, so an embedding dataset made from real imagery (the bundled demo) can be evaluated.

Each fragment's own footprint (``utm_footprint`` in ``utm_crs``) is read from a source scene
folder in the same CRS (nodata = DN 0 is left out; fragments with less than half their area
covered are left unlabelled). Rules:

* ``ndwi`` (any L1C/L2A scene with B03 and B08): NDWI = (B03 - B08) / (B03 + B08) per pixel
  (McFeeters 1996); ``water_fraction`` = share of pixels with NDWI > 0;
  label ``water`` if water_fraction >= 0.5, else ``land``.
* ``scl`` (L2A scene with its SCL layer): per pixel, SCL 6 -> water; 3, 8, 9, 10 (cloud shadow,
  clouds, cirrus) -> cloud; every other class but 0 (no data) -> land; the label is the majority
  of the three, and ``scl_class`` the majority SCL class name.
* ``auto``: ``scl`` where the scene has an SCL layer, else ``ndwi``.

The output (Parquet) has ``unique_id``, ``label``, ``rule``, ``water_fraction``,
``scl_class``, ``valid_fraction`` and ``source``; evaluate with ``join="unique_id"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.errors import DataError, UsageError
from mtquery.io.fsio import atomic_path
from mtquery.query.session import open_session

RULES = ("auto", "ndwi", "scl")
SCL_NAMES = {0: "no_data", 1: "saturated_defective", 2: "dark_area", 3: "cloud_shadow",
             4: "vegetation", 5: "not_vegetated", 6: "water", 7: "unclassified",
             8: "cloud_medium", 9: "cloud_high", 10: "thin_cirrus", 11: "snow_ice"}
SCL_GROUP = {6: "water", 3: "cloud", 8: "cloud", 9: "cloud", 10: "cloud"}
_SUFFIXES = (".tif", ".tiff", ".jp2")


ENV_SOURCES = "MTQUERY_LABEL_SOURCES"


def default_sources() -> list[Path]:
    """Scene folders named by ``$MTQUERY_LABEL_SOURCES`` (separated by the OS path separator,
    ``:`` on Linux), else none: the scenes must then be given."""
    value = os.environ.get(ENV_SOURCES, "")
    return [Path(p) for p in value.split(os.pathsep) if p]


def _band_file(folder: Path, band: str) -> Path | None:
    pat = re.compile(rf"(^|[_\-.]){band}([_\-.]|$)", re.IGNORECASE)
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() in _SUFFIXES and pat.search(f.stem):
            return f
    return None


class Scene:
    def __init__(self, folder: Path):
        import rasterio

        self.folder = folder
        self.files = {b: _band_file(folder, b) for b in ("B03", "B08", "SCL")}
        ref = self.files["B03"] or self.files["SCL"]
        if ref is None:
            raise DataError(f"{folder}: no B03 or SCL band file")
        with rasterio.open(ref) as src:
            self.epsg = src.crs.to_epsg() if src.crs else None
            self.bounds = tuple(src.bounds)

    def covers(self, epsg: int, bounds: tuple[float, float, float, float]) -> bool:
        if epsg != self.epsg:
            return False
        x0, y0, x1, y1 = bounds
        bx0, by0, bx1, by1 = self.bounds
        return x0 < bx1 and x1 > bx0 and y0 < by1 and y1 > by0

    def read(self, band: str, bounds, shape=None) -> np.ndarray:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import from_bounds

        with rasterio.open(self.files[band]) as src:
            win = from_bounds(*bounds, transform=src.transform)
            if shape is None:
                shape = (max(1, round(win.height)), max(1, round(win.width)))
            return src.read(1, window=win, out_shape=shape, boundless=True, fill_value=0,
                            resampling=Resampling.nearest)


def label_fragment(scene: Scene, bounds, rule: str) -> dict | None:
    use = rule
    if rule == "auto":
        use = "scl" if scene.files["SCL"] is not None else "ndwi"
    if use == "ndwi":
        if scene.files["B03"] is None or scene.files["B08"] is None:
            raise DataError(f"{scene.folder}: rule ndwi needs B03 and B08")
        g = scene.read("B03", bounds).astype(np.float64)
        n = scene.read("B08", bounds, g.shape).astype(np.float64)
        valid = (g > 0) & (n > 0)
        vf = float(valid.mean())
        if vf < 0.5:
            return None
        ndwi = (g[valid] - n[valid]) / (g[valid] + n[valid])
        wf = float((ndwi > 0).mean())
        return {"label": "water" if wf >= 0.5 else "land", "rule": "ndwi",
                "water_fraction": wf, "scl_class": None, "valid_fraction": vf}
    if scene.files["SCL"] is None:
        raise DataError(f"{scene.folder}: rule scl needs an SCL layer")
    s = scene.read("SCL", bounds).astype(np.int64)
    valid = s > 0
    vf = float(valid.mean())
    if vf < 0.5:
        return None
    v = s[valid]
    groups = np.array([SCL_GROUP.get(int(c), "land") for c in range(12)], dtype=object)[v]
    names, counts = np.unique(groups, return_counts=True)
    label = str(names[np.argmax(counts)])
    cls, ccounts = np.unique(v, return_counts=True)
    return {"label": label, "rule": "scl", "water_fraction": float((v == 6).mean()),
            "scl_class": SCL_NAMES.get(int(cls[np.argmax(ccounts)]), "unknown"),
            "valid_fraction": vf}


def derive(dataset, output: str | Path, rule: str = "auto",
           sources: list[str | Path] | None = None) -> dict:
    """Label every fragment of ``dataset`` that a source scene covers; write ``output``."""
    import shapely

    if rule not in RULES:
        raise UsageError(f"rule must be one of {', '.join(RULES)}, got {rule!r}", "rule")
    folders = [Path(s) for s in (sources or default_sources())]
    if not folders:
        raise DataError(f"no source scenes given: pass the scene folders (sources) or set "
                        f"${ENV_SOURCES}", "sources")
    scenes = [Scene(f) for f in folders if Path(f).is_dir()]
    if not scenes:
        raise DataError(f"no source scene folders found: {', '.join(map(str, folders))}",
                        "sources")
    session = open_session(dataset)
    try:
        tbl = session.con.execute(
            "SELECT unique_id, utm_footprint, utm_crs FROM embeddings "
            "ORDER BY source_file, source_row").to_arrow_table().to_pydict()
    finally:
        session.close()
    rows: dict[str, list] = {k: [] for k in ("unique_id", "label", "rule", "water_fraction",
                                             "scl_class", "valid_fraction", "source")}
    for uid, wkt, crs in zip(tbl["unique_id"], tbl["utm_footprint"], tbl["utm_crs"],
                             strict=True):
        if not wkt or not crs or not str(crs).upper().startswith("EPSG:"):
            continue
        epsg = int(str(crs).split(":")[1])
        bounds = shapely.from_wkt(wkt).bounds
        for sc in scenes:
            if sc.covers(epsg, bounds):
                lab = label_fragment(sc, bounds, rule)
                if lab is None:
                    continue
                rows["unique_id"].append(uid)
                for k, v in lab.items():
                    rows[k].append(v)
                rows["source"].append(sc.folder.name)
                break
    if not rows["unique_id"]:
        raise DataError("no fragment of the dataset lies on a source scene (matching UTM CRS "
                        "and footprint)")
    table = pa.table(rows)
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp)
    counts: dict[str, int] = {}
    for v in rows["label"]:
        counts[v] = counts.get(v, 0) + 1
    return {"rows": len(rows["unique_id"]), "rule": rule, "counts": dict(sorted(counts.items())),
            "sources": [s.folder.name for s in scenes]}
