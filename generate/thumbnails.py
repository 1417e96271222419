"""Image chips of the fragments a run embeds: one small RGB thumbnail per fragment, written to
a sidecar beside the shard (``DIR/_mtquery/thumbnails/part-IIII-KKKKK.parquet``: columns
``unique_id`` and ``thumbnail``, WebP bytes), so the map page can show what each row looks like.

Colours per model family, from the model's own input bands (nothing else is decoded):

* Sentinel-2 (the model reads B04, B03, B02): true colour as the Major TOM Core thumbnails are
  made, ``1.3 * (value / 10000) ** 0.6`` clipped to 0..1;
* Sentinel-1 (vv, vh, linear power): red vv, blue vh, green their mean, each in decibels over a
  fixed range (vv -25..0 dB, vh -32..-5 dB), so chips compare across fragments;
* other band sets: no thumbnail (the page shows a placeholder).

The chip is the fragment area-averaged down to :data:`THUMB_PX` pixels a side (WebP)."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.io.fsio import atomic_path

#: side of a thumbnail in pixels (fragments are 224-384 px)
THUMB_PX = 128
#: WebP quality: under 1 KB a chip on the demo's imagery
QUALITY = 70
SIDECAR_DIR = "thumbnails"
S2_RGB = ("B04", "B03", "B02")
S1_PAIR = ("vv", "vh")
SCHEMA = pa.schema([("unique_id", pa.string()), ("thumbnail", pa.binary())])
MEDIA_TYPE = "image/webp"


def colour_bands(bands: tuple[str, ...]) -> tuple[str, tuple[int, ...]] | None:
    """("s2" | "s1", indices into ``bands``) of the bands a thumbnail is made from, or None
    when the model's bands hold neither true colour nor vv/vh."""
    for kind, want in (("s2", S2_RGB), ("s1", S1_PAIR)):
        if all(b in bands for b in want):
            return kind, tuple(bands.index(b) for b in want)
    return None


def rgb_chips(fragments: np.ndarray, bands: tuple[str, ...]) -> np.ndarray | None:
    """(n, f, f, 3) uint8 colour images of (n, bands, f, f) raw fragments, or None when the
    bands make no colour image."""
    which = colour_bands(bands)
    if which is None or not len(fragments):
        return None
    kind, idx = which
    x = np.asarray(fragments[:, list(idx)])
    if kind == "s2":  # a table over the integer values (Core's formula, 10x faster)
        lut = _s2_table()
        rgb = lut[np.clip(np.nan_to_num(x, nan=0.0), 0, len(lut) - 1).astype(np.int32)]
    else:
        db = 10.0 * np.log10(np.clip(np.nan_to_num(x.astype(np.float32), nan=0.0), 1e-6, None))
        vv = (db[:, 0] + 25.0) / 25.0
        vh = (db[:, 1] + 32.0) / 27.0
        rgb = (np.clip(np.stack([vv, (vv + vh) / 2.0, vh], axis=1), 0, 1) * 255 + 0.5
               ).astype(np.uint8)
    return np.ascontiguousarray(rgb.transpose(0, 2, 3, 1))


@functools.cache
def _s2_table() -> np.ndarray:
    """uint8 true-colour value of every reflectance count 0..20000 (brighter saturates)."""
    v = np.arange(20_001, dtype=np.float64)
    return (np.clip(1.3 * (v / 10_000.0) ** 0.6, 0, 1) * 255 + 0.5).astype(np.uint8)


def encode(image: np.ndarray, px: int = THUMB_PX) -> bytes:
    """WebP bytes of one (h, w, 3) uint8 image, area-averaged down to ``px`` a side."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image), "RGB")
    if max(img.size) > px:
        img = img.resize((px, px * img.size[1] // img.size[0]), Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="WEBP", quality=QUALITY, method=4)
    return buf.getvalue()


def fragment_thumbnails(fragments: np.ndarray, bands: tuple[str, ...]) -> list[bytes] | None:
    """One encoded thumbnail per fragment (None: the bands make no colour image)."""
    chips = rgb_chips(fragments, bands)
    return None if chips is None else [encode(c) for c in chips]


def sidecar_path(shard: Path) -> Path:
    """Where the thumbnails of ``DIR/NAME.parquet`` live:
    ``DIR/_mtquery/thumbnails/NAME.parquet``."""
    return shard.parent / "_mtquery" / SIDECAR_DIR / shard.name


def write_sidecar(shard: Path, unique_ids: list[str], thumbs: list[bytes]) -> Path | None:
    """Write (atomically) or remove the thumbnail sidecar of ``shard``; None when no rows."""
    path = sidecar_path(shard)
    if not thumbs:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"unique_id": pa.array(unique_ids, pa.string()),
                      "thumbnail": pa.array(thumbs, pa.binary())}, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="none", row_group_size=4096)
    return path
