#!/usr/bin/env python
"""Seeded SYNTHETIC fixture in the EuroSAT (MS) layout: ``<root>/<ClassName>/<Class>_<i>.tif``,
13-band uint16 GeoTIFFs (B01..B08, B8A, B09, B10, B11, B12), georeferenced in UTM like the real
EuroSAT tiles. Each class has its own mean spectrum plus seeded noise; patches sit in four
groups 20 km apart in UTM 29N (EPSG:32629), every class in every group, 2 km apart inside one.

    python tests/data/eurosat/make_data.py OUT_DIR [--per-class 8] [--size 16] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CLASSES = ("AnnualCrop", "Forest", "SeaLake")
# rough mean reflectance DN per band (13 bands) for each class
SPECTRA = {
    "AnnualCrop": [1300, 1100, 1050, 1000, 1400, 2300, 2700, 2800, 3000, 900, 20, 2400, 1600],
    "Forest": [1200, 900, 750, 550, 900, 2000, 2500, 2600, 2800, 800, 15, 1400, 700],
    "SeaLake": [1300, 1000, 800, 500, 400, 350, 330, 300, 280, 150, 10, 120, 90],
}


def make(root: str | Path, per_class: int = 8, size: int = 16, seed: int = 0) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    root = Path(root)
    for ci, name in enumerate(CLASSES):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        mean = np.array(SPECTRA[name], dtype=np.float64)
        for i in range(per_class):
            img = mean[:, None, None] * (1 + 0.08 * rng.normal(size=(13, 1, 1))) + \
                60 * rng.normal(size=(13, size, size))
            img = np.clip(img, 1, 20000).astype(np.uint16)
            x0 = 480000 + (i % 4) * 20000 + ci * 2000
            y0 = 4300000 + (i // 4) * 2000
            tr = from_origin(x0, y0, 10, 10)
            with rasterio.open(d / f"{name}_{i + 1}.tif", "w", driver="GTiff", width=size,
                               height=size, count=13, dtype="uint16", crs="EPSG:32629",
                               transform=tr) as dst:
                dst.write(img)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=8)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make(a.out, a.per_class, a.size, a.seed))


if __name__ == "__main__":
    main()
