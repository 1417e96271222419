#!/usr/bin/env python
"""A Major TOM Core *release* layout from the Core fixture of ``make_data.py``:

    OUT/metadata.parquet            one row per sample: grid_cell, product_id, timestamp, crs,
                                    parquet_url (the Hub's URL, as in the real metadata),
                                    parquet_row; sorted by grid_cell, 4 rows a row group
    OUT/images/part_00000.parquet   the fixture's samples plus a ``thumbnail`` column: an RGB
                                    PNG of the whole window made as the Core thumbnails are
                                    (B04, B03, B02; 1.3 * (v / 10000) ** 0.6), ``thumb_px`` a
                                    side (the real ones are 1068; smaller here, so a crop has
                                    to be scaled)

Deterministic (real imagery, no randomness).

    python tests/data/core_virginia/with_thumbnails.py OUT_DIR [--thumb-px 534]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
HUB = "https://huggingface.co/datasets/Major-TOM/Core-S2L2A/resolve/main/images/"


def _make_data():
    spec = importlib.util.spec_from_file_location("core_virginia_make_data",
                                                  HERE / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def thumbnail_png(b04: np.ndarray, b03: np.ndarray, b02: np.ndarray, px: int) -> bytes:
    from PIL import Image

    rgb = np.stack([b04, b03, b02], -1).astype(np.float64)
    img = (np.clip(1.3 * (rgb / 10_000) ** 0.6, 0, 1) * 255).astype(np.uint8)
    im = Image.fromarray(img, "RGB")
    if px != im.size[0]:
        im = im.resize((px, px), Image.Resampling.BOX)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def build(out_dir: str | Path, thumb_px: int = 534, n_cells: int = 9) -> Path:
    """Write OUT/images/part_00000.parquet (with thumbnails) and OUT/metadata.parquet;
    returns the metadata path."""
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        src = pq.ParquetFile(_make_data().build(tmp, n_cells=n_cells))
        meta = _write_images(src, out / "images" / "part_00000.parquet", thumb_px)
    table = pa.Table.from_pylist(sorted(meta, key=lambda r: r["grid_cell"]))
    path = out / "metadata.parquet"
    pq.write_table(table, path, row_group_size=4)
    return path


def _write_images(src: pq.ParquetFile, image: Path, thumb_px: int) -> list[dict]:
    from mtquery.generate.core_parquet import decode_geotiff

    schema = src.schema_arrow.append(pa.field("thumbnail", pa.binary()))
    image.parent.mkdir(parents=True, exist_ok=True)
    meta = []
    with pq.ParquetWriter(image, schema) as w:
        for g in range(src.num_row_groups):
            t = src.read_row_group(g)
            bands = [decode_geotiff(t[b][0].as_py())[0] for b in ("B04", "B03", "B02")]
            t = t.append_column("thumbnail", pa.array([thumbnail_png(*bands, thumb_px)]))
            w.write_table(t)
            _, origin, _, crs = decode_geotiff(t["B04"][0].as_py())
            meta.append({"grid_cell": t["grid_cell"][0].as_py(),
                         "grid_row_u": t["grid_row_u"][0].as_py(),
                         "grid_col_r": t["grid_col_r"][0].as_py(),
                         "product_id": t["product_id"][0].as_py(),
                         "timestamp": t["timestamp"][0].as_py(), "crs": crs,
                         "parquet_url": HUB + image.name, "parquet_row": g})
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--thumb-px", type=int, default=534)
    a = ap.parse_args()
    print(build(a.out, a.thumb_px))


if __name__ == "__main__":
    main()
