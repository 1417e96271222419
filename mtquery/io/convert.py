"""``mtquery convert``: any embedding Parquet / GeoParquet (``mtquery.io.columns``) as a
Major TOM-standard dataset: every standard column materialised (derived ones as the views
derive them), the optimised layout (Hilbert order, bbox covering, fixed-size float32
vectors, zstd), validated, published with one rename.

It is ``mtquery.io.extract`` over the whole dataset: each source file becomes a part of
standard rows in staging with a marker saying it is done, so a rerun after a kill goes on
from the next file; local files and URLs alike.
"""

from __future__ import annotations

from pathlib import Path

from mtquery.io.datasets import Dataset, resolve
from mtquery.progress import ProgressCallback


def convert(dataset: Dataset | str, output: str | Path, *, columns: str | None = None,
            row_group_size: int = 10_000, workers: int = 8, index: bool = False,
            validate: bool = True, progress: ProgressCallback | None = None) -> dict:
    """Write ``dataset`` (any embedding Parquet, its roles detected or named by ``columns``,
    e.g. ``vector=emb,id=chip_id``) into ``output`` (a new directory) as a standard
    dataset. Returns the manifest (``_extract.json``, tool ``mtquery convert``)."""
    from mtquery.io.extract import extract

    ds = resolve(dataset, columns=columns) if columns is not None else resolve(dataset)
    return extract(ds, output, row_group_size=row_group_size, workers=workers, index=index,
                   allow_full_scan=True, validate=validate, progress=progress,
                   tool="mtquery convert")
