"""Inputs of the generator: what each input path is, and the sources that read them.

* Major TOM Core parquet (a file, a directory with ``images/*.parquet``, or a remote
  ``https://`` / ``hf://datasets/...`` file): :class:`~mtquery.generate.core_parquet.CoreInput`.
* A scene as per-band GeoTIFF/COG files, a directory of such files, or a STAC item JSON:
  :class:`~mtquery.generate.scenes.SceneInput`.

Both yield :class:`~mtquery.generate.sample.Sample` objects, one Core window each.
"""

from __future__ import annotations

from pathlib import Path

from mtquery.errors import DataError, UsageError
from mtquery.generate.core_parquet import CoreInput
from mtquery.generate.scenes import SceneInput, band_of, scene_from_files, scene_from_stac
from mtquery.io.datasets import is_remote

Source = CoreInput | SceneInput


def open_inputs(paths: list[str], product_id: str | None = None,
                timestamp: str | None = None) -> list[Source]:
    """Classify each input: Core parquet (file, directory with images/*.parquet, URL), a STAC
    item JSON, or a scene (directory of band files, or band files given together)."""
    if not paths:
        raise UsageError("no inputs given", argument="inputs")
    out: list[Source] = []
    loose: list[str] = []
    for p in paths:
        low = p.lower().split("?")[0]
        if low.endswith(".parquet"):
            if not is_remote(p) and not Path(p).is_file():
                raise DataError(f"input {p} does not exist")
            out.append(CoreInput(p))
        elif low.endswith(".json"):
            out.append(scene_from_stac(p, product_id, timestamp))
        elif is_remote(p):
            raise UsageError(f"remote input {p} must be a .parquet file or a STAC .json item")
        elif Path(p).is_dir():
            d = Path(p)
            parts = sorted((d / "images").glob("*.parquet")) or sorted(
                q for q in d.glob("*.parquet") if q.name != "metadata.parquet")
            if parts:
                out.extend(CoreInput(str(q)) for q in parts)
                continue
            stac = sorted(d.glob("*.json"))
            tifs = sorted(str(q) for q in d.iterdir() if q.suffix.lower() in
                          (".tif", ".tiff", ".jp2") and band_of(q.name))
            if stac:  # a mirrored STAC item: its metadata gives product id and time
                out.append(scene_from_stac(str(stac[0]), product_id, timestamp))
            elif tifs:
                out.append(scene_from_files(p, tifs, product_id, timestamp))
            else:
                raise DataError(f"{p}: no Core parquet, band files or STAC item in it")
        elif Path(p).is_file():
            loose.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    if loose:
        parent = str(Path(loose[0]).parent)
        out.append(scene_from_files(parent, loose, product_id, timestamp))
    return out
