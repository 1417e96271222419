#!/usr/bin/env python
"""Make the committed test scene ``tests/data/virginia_120m/``: the REAL Sentinel-2 L1C crop of
``shared/data/s2l1c_virginia_scene`` (Virginia Eastern Shore, EPSG:32618, 13 bands) averaged
down to 120 m pixels (10 m bands by 12 x 12 blocks, 20 m by 6 x 6, 60 m by 2 x 2) on the same
upper-left corner, written as one small deflate GeoTIFF per band (``B01.tif`` ...). Deterministic
(no randomness). The scene fully covers the Core window of grid cell 419U_667L.

    python tests/data/virginia_120m/make_data.py [--src ../shared/data/s2l1c_virginia_scene]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

HERE = Path(__file__).resolve().parent
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
         "B12")
TARGET = 120.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", default=str(HERE.parents[3] / "shared" / "data" /
                                         "s2l1c_virginia_scene"))
    ap.add_argument("--out", default=str(HERE))
    a = ap.parse_args()
    for b in BANDS:
        with rasterio.open(Path(a.src) / f"s2_{b}.jp2") as src:
            arr = src.read(1).astype(np.float64)
            t, crs = src.transform, src.crs
        k = int(round(TARGET / t.a))
        h, w = arr.shape[0] // k, arr.shape[1] // k
        small = arr[:h * k, :w * k].reshape(h, k, w, k).mean(axis=(1, 3))
        out = np.round(small).astype(np.uint16)
        prof = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "uint16",
                "crs": crs, "transform": Affine(TARGET, 0, t.c, 0, -TARGET, t.f),
                "compress": "deflate", "predictor": 2, "zlevel": 9}
        with rasterio.open(Path(a.out) / f"{b}.tif", "w", **prof) as dst:
            dst.write(out, 1)
    print(f"wrote {len(BANDS)} bands to {a.out}")


if __name__ == "__main__":
    main()
