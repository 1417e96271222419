"""Image chips of fragments: what a row of a dataset looks like.

Two places hold imagery, tried in order:

1. **Sidecar thumbnails** written by ``mtquery generate`` (and shipped with the demo): for a
   source file ``DIR/NAME.parquet``, ``DIR/_mtquery/thumbnails/NAME.parquet`` holds
   ``unique_id`` and ``thumbnail`` (WebP, <= 128 px; :mod:`mtquery.generate.thumbnails`).
2. **Major TOM Core thumbnails** of released sets: the Core ``metadata.parquet`` names, per
   grid cell and product, the image parquet (``images/part_XXXXX.parquet``, looked up beside
   the metadata, so local copies and mirrors work) and its row; that row group's
   ``thumbnail`` column (an RGB PNG of the whole 1068 px window) is range-read and cropped to
   the fragment's ``pixel_bbox`` scaled to the thumbnail (``[row_off, col_off, row_end,
   col_end]`` of the 1068 px window).

Reads are bounded: a thumbnail above :data:`MAX_THUMB_BYTES` or :data:`MAX_THUMB_PX`, or a
metadata search above :data:`MAX_METADATA_BYTES`, is a DataError, never a hang.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtquery.errors import DataError

if TYPE_CHECKING:
    from mtquery.query.session import Session

SIDECAR = ("_mtquery", "thumbnails")
#: side of a Core window in 10 m pixels (the grid ``pixel_bbox`` counts in)
CORE_PX = 1068
MAX_THUMB_BYTES = 16 << 20
MAX_THUMB_PX = 4096
MAX_METADATA_BYTES = 256 << 20
META_COLUMNS = ("grid_cell", "product_id", "parquet_url", "parquet_row")
CHIP_QUALITY = 80


@dataclass(frozen=True)
class Chip:
    """An encoded image of one fragment."""

    data: bytes
    media_type: str
    width: int
    height: int
    source: str  # "sidecar" | "core"


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get_or(self, key, make):
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()
        with self.lock:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


_SIDECARS = _LRU(8)
_FOOTERS = _LRU(64)
_METADATA = _LRU(4)


def _is_url(source: str) -> bool:
    return "://" in source


# ---------------------------------------------------------------- sidecar thumbnails


def sidecar_for(source_file: str) -> Path | None:
    """The thumbnail sidecar of a local source file, if there is one."""
    if _is_url(source_file):
        return None
    p = Path(source_file)
    side = p.parent.joinpath(*SIDECAR, p.name)
    return side if side.is_file() else None


def _sidecar_index(path: Path) -> tuple[dict[str, int], pa.Table]:
    try:
        table = pq.read_table(path, columns=["unique_id", "thumbnail"])
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"unreadable thumbnail sidecar {path}: {exc}") from exc
    ids = table.column("unique_id").to_pylist()
    return {u: i for i, u in enumerate(ids)}, table


def sidecar_chip(source_file: str, unique_id: str) -> Chip | None:
    """The generated thumbnail of ``unique_id`` beside ``source_file`` (None: none there)."""
    path = sidecar_for(source_file)
    if path is None:
        return None
    index, table = _SIDECARS.get_or((str(path), path.stat().st_mtime_ns),
                                    lambda: _sidecar_index(path))
    row = index.get(unique_id)
    if row is None:
        return None
    data = table.column("thumbnail")[row].as_py()
    if not data or len(data) > MAX_THUMB_BYTES:
        return None
    w, h, fmt = _image_size(data)
    return Chip(data, f"image/{fmt}", w, h, "sidecar")


def _image_size(data: bytes) -> tuple[int, int, str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0], im.size[1], (im.format or "png").lower()
    except Exception as exc:  # noqa: BLE001  (Pillow raises many kinds)
        raise DataError(f"not an image ({type(exc).__name__})") from None


# ---------------------------------------------------------------- remote parquet by range


def _remote_parquet(url: str) -> pq.ParquetFile:
    """A ParquetFile over ``url`` read by range through the one HTTP layer
    (``mtquery.io.rangefile``); its footer parsed once per process."""
    from mtquery.io.rangefile import RangeFile

    f = RangeFile(url)  # one suffix request: the size and the footer

    def footer() -> pq.FileMetaData:
        try:
            return pq.read_metadata(f)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataError(f"{url}: not a readable Parquet file ({exc})") from exc

    return pq.ParquetFile(f, metadata=_FOOTERS.get_or(url, footer), pre_buffer=True)


def open_parquet(source: str) -> pq.ParquetFile:
    """A local path or a URL (read by range) as a ParquetFile."""
    if _is_url(source):
        return _remote_parquet(source)
    try:
        return pq.ParquetFile(source)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {source}: {exc}") from exc


# ---------------------------------------------------------------- Major TOM Core thumbnails


def _image_source(metadata: str, parquet_url: str) -> str:
    """The image parquet a metadata row names, found beside the metadata file."""
    tail = parquet_url
    if "images/" in parquet_url:
        tail = "images/" + parquet_url.rsplit("images/", 1)[1]
    elif _is_url(parquet_url):
        return parquet_url
    if _is_url(metadata):
        return urljoin(metadata, tail)
    return str(Path(metadata).parent / tail)


def _metadata_groups(pf: pq.ParquetFile, grid_cell: str) -> list[int]:
    """Row groups whose grid_cell statistics may hold ``grid_cell`` (all without stats)."""
    md = pf.metadata
    names = pf.schema_arrow.names
    missing = [c for c in META_COLUMNS if c not in names]
    if missing:
        raise DataError(f"not a Major TOM Core metadata file (no {', '.join(missing)})")
    col = names.index("grid_cell")
    out = []
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(col).statistics
        if st is None or not st.has_min_max or st.min <= grid_cell <= st.max:
            out.append(g)
    return out


def core_location(metadata: str, grid_cell: str, product_id: str) -> tuple[str, int] | None:
    """(image parquet, row) of a Core sample, from the Core ``metadata.parquet`` (local path
    or URL), or None when the metadata has no such sample."""
    pf = open_parquet(metadata)
    groups = _metadata_groups(pf, grid_cell)
    md = pf.metadata
    cols = [pf.schema_arrow.names.index(c) for c in META_COLUMNS]
    cost = sum(md.row_group(g).column(c).total_compressed_size for g in groups for c in cols)
    if cost > MAX_METADATA_BYTES:
        raise DataError(f"finding {grid_cell} in {metadata} would read {cost >> 20} MiB of "
                        f"metadata (at most {MAX_METADATA_BYTES >> 20} MiB)")
    for g in groups:
        table = _METADATA.get_or((metadata, g), lambda g=g: pf.read_row_group(
            g, columns=list(META_COLUMNS)))
        hit = table.filter(pc.and_(pc.equal(table["grid_cell"], grid_cell),
                                   pc.equal(table["product_id"], product_id)))
        if hit.num_rows:
            return (_image_source(metadata, hit["parquet_url"][0].as_py()),
                    int(hit["parquet_row"][0].as_py()))
    return None


def _row_group_of(pf: pq.ParquetFile, row: int) -> tuple[int, int]:
    md = pf.metadata
    start = 0
    for g in range(md.num_row_groups):
        n = md.row_group(g).num_rows
        if row < start + n:
            return g, row - start
        start += n
    raise DataError(f"row {row} is past the end of the image file ({start} rows)")


def core_thumbnail(image: str, row: int, grid_cell: str, product_id: str) -> bytes:
    """The ``thumbnail`` bytes of row ``row`` of a Core image parquet (checked to be the
    sample asked for)."""
    pf = open_parquet(image)
    if "thumbnail" not in pf.schema_arrow.names:
        raise DataError(f"{image} has no thumbnail column")
    g, i = _row_group_of(pf, row)
    idx = pf.schema_arrow.names.index("thumbnail")
    size = pf.metadata.row_group(g).column(idx).total_compressed_size
    if size > MAX_THUMB_BYTES:
        raise DataError(f"the thumbnail of {grid_cell} is {size >> 20} MiB (at most "
                        f"{MAX_THUMB_BYTES >> 20} MiB)")
    t = pf.read_row_group(g, columns=["grid_cell", "product_id", "thumbnail"]).slice(i, 1)
    if (t["grid_cell"][0].as_py(), t["product_id"][0].as_py()) != (grid_cell, product_id):
        raise DataError(f"{image} row {row} is not {grid_cell} / {product_id}")
    data = t["thumbnail"][0].as_py()
    if not data:
        raise DataError(f"{image} row {row} has an empty thumbnail")
    return data


def crop_thumbnail(data: bytes, pixel_bbox: list[int], side: int = CORE_PX) -> Chip:
    """Crop a whole-window thumbnail to ``pixel_bbox`` (of a ``side`` px window) scaled to the
    thumbnail's size; WebP."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        if max(w, h) > MAX_THUMB_PX:
            raise DataError(f"thumbnail of {w} x {h} px (at most {MAX_THUMB_PX})")
        im = im.convert("RGB")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001  (Pillow raises many kinds)
        raise DataError(f"undecodable thumbnail ({type(exc).__name__})") from None
    r0, c0, r1, c1 = (int(v) for v in pixel_bbox)
    sx, sy = w / side, h / side
    box = (round(c0 * sx), round(r0 * sy), round(c1 * sx), round(r1 * sy))
    if not (0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h):
        raise DataError(f"pixel_bbox {pixel_bbox} lies outside the {side} px window")
    crop = im.crop(box)
    buf = io.BytesIO()
    crop.save(buf, format="WEBP", quality=CHIP_QUALITY)
    return Chip(buf.getvalue(), "image/webp", crop.size[0], crop.size[1], "core")


def core_chip(metadata: str, grid_cell: str, product_id: str,
              pixel_bbox: list[int] | None) -> Chip | None:
    """The Core thumbnail of a fragment cropped to it (None: the Core has no such sample)."""
    if not pixel_bbox or len(pixel_bbox) != 4:
        return None
    where = core_location(metadata, grid_cell, product_id)
    if where is None:
        return None
    return crop_thumbnail(core_thumbnail(where[0], where[1], grid_cell, product_id),
                          list(pixel_bbox))


# ---------------------------------------------------------------- a dataset's fragment


LOOKUP_SQL = ("SELECT source_file, grid_cell, product_id, pixel_bbox FROM embeddings "
              "WHERE unique_id = ?")
MAX_ID_CHARS = 256


def dataset_core(session: Session) -> str | None:
    """The Core metadata of the session's dataset (a released set's catalog entry names it,
    ``hf://``, served by $MTQUERY_HF_ENDPOINT when set, as the embeddings are), or None."""
    entry = session.dataset.entry
    core = getattr(entry, "core", None) if entry is not None else None
    if core and core.startswith("hf://datasets/"):
        from mtquery.io.remote import hf_endpoint

        repo_path = core[len("hf://datasets/"):].split("/", 2)
        if len(repo_path) == 3:
            owner, name, path = repo_path
            core = f"{hf_endpoint(default=True)}/datasets/{owner}/{name}/resolve/main/{path}"
    return core


def fragment_row(session: Session, unique_id: str, grid_cell: str | None = None) -> dict:
    """source_file, grid_cell, product_id and pixel_bbox of fragment ``unique_id``
    (``grid_cell`` narrows the scan: row-group pruning on large or remote datasets)."""
    from mtquery.errors import UsageError
    from mtquery.query.search import run

    if not unique_id or len(unique_id) > MAX_ID_CHARS:
        raise UsageError(f"unique_id must be 1 to {MAX_ID_CHARS} characters", "unique_id")
    sql, params = LOOKUP_SQL, [unique_id]
    if grid_cell:
        sql, params = sql + " AND grid_cell = ?", [unique_id, grid_cell]
    rows = run(session, sql + " LIMIT 1", params).to_pylist()
    if not rows:
        raise DataError(f"unknown unique_id {unique_id!r}", "unique_id")
    return rows[0]


def row_chip(row: dict, unique_id: str, core: str | None) -> Chip | None:
    """The image of the fragment ``row`` (from :func:`fragment_row`) describes: its sidecar
    thumbnail, else the Core thumbnail cropped to it (``core``: the Core metadata)."""
    chip = sidecar_chip(row["source_file"], unique_id)
    if chip is not None or core is None:
        return chip
    return core_chip(core, row["grid_cell"], row["product_id"], row["pixel_bbox"])


def fragment_chip(session: Session, unique_id: str, *, core: str | None = None,
                  grid_cell: str | None = None) -> Chip | None:
    """The image of fragment ``unique_id``: its sidecar thumbnail, else the Core thumbnail
    (``core``: a Core ``metadata.parquet``, path or URL; default: the dataset's) cropped to it;
    None when neither is there."""
    row = fragment_row(session, unique_id, grid_cell)
    return row_chip(row, unique_id, core or dataset_core(session))
