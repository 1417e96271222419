"""A memory-mapped float32 sidecar of a local dataset's vectors, for fast repeated exact scans.

Decoding Parquet float lists runs at well under 1 GB/s; a matrix-vector product over a
memory-mapped float32 file runs at memory bandwidth (MEASURED.md). The first exact query on a
local dataset writes ``vectors.f32`` (L2-normalised rows, NaN rows for zero / non-finite
vectors, file order) and ``meta.json`` into ``$MTQUERY_CACHE`` (default
``~/.cache/mtquery``) under a key made of every file's path, size and mtime, so a changed
file is never served from a stale cache. Set ``MTQUERY_CACHE=off`` to always stream;
datasets whose vectors exceed ``MTQUERY_CACHE_MAX_BYTES`` (default 4 GiB) are streamed
unless ``mtquery index build`` made a cache for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.datasets import Dataset
from mtquery.errors import DataError
from mtquery.schema import embedding_matrix

ENV_DIR = "MTQUERY_CACHE"
ENV_MAX = "MTQUERY_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 4 << 30
FORMAT_VERSION = 2
#: result columns kept beside the vectors (Arrow IPC, memory-mapped) so a top-k needs no scan
ROW_COLUMNS = {"unique_id": pa.string(), "grid_cell": pa.string(), "timestamp": pa.string(),
               "product_id": pa.string(), "centre_lat": pa.float64(),
               "centre_lon": pa.float64()}
CHUNK_ROWS = 65_536


def cache_root() -> Path | None:
    value = os.environ.get(ENV_DIR, "")
    if value.lower() in ("off", "0", "false", "none"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mtquery"


def fingerprint(files: Sequence[Path]) -> str:
    """Identity of a local dataset's bytes: resolved paths, sizes and modification times."""
    parts = []
    for f in files:
        st = Path(f).stat()
        parts.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class VectorCache:
    path: Path
    n: int
    dim: int
    files: tuple[str, ...]  # the dataset's source strings, in order
    offsets: np.ndarray  # (len(files) + 1,) first global row of each file

    def matrix(self) -> np.ndarray:
        if self.n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _open_matrix(str(self.path / "vectors.f32"), self.n, self.dim)

    def global_rows(self, files: Sequence[str], rows: np.ndarray) -> np.ndarray:
        index = {f: i for i, f in enumerate(self.files)}
        try:
            fi = np.fromiter((index[f] for f in files), dtype=np.int64, count=len(files))
        except KeyError as exc:
            raise DataError(f"file {exc.args[0]} is not part of the cached dataset") from None
        return self.offsets[fi] + np.asarray(rows, dtype=np.int64)

    def rows(self, idx: np.ndarray) -> pa.Table:
        """Result columns (ROW_COLUMNS) of global rows ``idx``, in that order."""
        with pa.memory_map(str(self.path / "rows.arrow")) as src:
            table = pa.ipc.open_file(src).read_all()
        return table.take(pa.array(np.asarray(idx, dtype=np.int64)))

    def locate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(file index, row in file) of global rows."""
        fi = np.searchsorted(self.offsets, idx, side="right") - 1
        return fi, idx - self.offsets[fi]


@lru_cache(maxsize=8)
def _open_matrix(path: str, n: int, dim: int) -> np.ndarray:
    """One mapping per file and process: re-mapping per query would fault every page again."""
    return np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))


def _load(path: Path, dataset: Dataset) -> VectorCache | None:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != FORMAT_VERSION or meta.get("files") != list(dataset.sources):
        return None
    n, dim = int(meta["rows"]), int(meta["dim"])
    vec = path / "vectors.f32"
    if not vec.is_file() or vec.stat().st_size != n * dim * 4:
        return None  # truncated or foreign: rebuild
    if not (path / "rows.arrow").is_file():
        return None
    return VectorCache(path=path, n=n, dim=dim, files=tuple(meta["files"]),
                       offsets=np.asarray(meta["offsets"], dtype=np.int64))


def open_cache(dataset: Dataset, dim: int, build: bool = True,
               max_bytes: int | None = None, vectors: Path | None = None
               ) -> VectorCache | None:
    """The dataset's vector cache: loaded if present and current, built if allowed."""
    root = cache_root()
    if root is None or dataset.remote or not dataset.local_files:
        return None
    path = root / "vectors" / fingerprint(dataset.local_files)
    cache = _load(path, dataset)
    if cache is not None and cache.dim == dim:
        return cache
    if not build:
        return None
    rows = [pq.ParquetFile(f).metadata.num_rows for f in dataset.local_files]
    limit = max_bytes if max_bytes is not None else int(os.environ.get(ENV_MAX,
                                                                       DEFAULT_MAX_BYTES))
    if sum(rows) * dim * 4 > limit:
        return None
    return build_cache(dataset, dim, path, rows, vectors)


def iter_vectors(files: Sequence[str | Path], dim: int | None = None
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """(global row offset, float32 matrix) per chunk of about CHUNK_ROWS rows, files in order.
    Files of small row groups are read several groups at a time with threads (2.4x faster
    than iter_batches, measured for the index build)."""
    offset = 0
    for f in files:
        pf = pq.ParquetFile(f)
        md = pf.metadata
        sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        if sizes and max(sizes) <= CHUNK_ROWS:
            groups, cur, rows = [], [], 0
            for g, r in enumerate(sizes):
                if cur and rows + r > CHUNK_ROWS:
                    groups.append(cur)
                    cur, rows = [], 0
                cur.append(g)
                rows += r
            if cur:
                groups.append(cur)
            chunks = (pf.read_row_groups(g, columns=["embedding"], use_threads=True).column(0)
                      for g in groups)
        else:
            chunks = (b.column(0) for b in pf.iter_batches(batch_size=CHUNK_ROWS,
                                                           columns=["embedding"]))
        for col in chunks:
            x = embedding_matrix(col)
            if dim is not None and x.shape[1] != dim:
                raise DataError(f"mixed embedding dimensions: {x.shape[1]} in {f}, {dim} "
                                "elsewhere")
            yield offset, x
            offset += len(x)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalised float32 rows; zero or non-finite vectors become NaN rows (never match)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x / norms
    out[~np.isfinite(out).all(axis=1)] = np.nan
    return out


def build_cache(dataset: Dataset, dim: int, path: Path, rows: list[int],
                vectors: Path | None = None) -> VectorCache:
    """Write the cache; ``vectors`` is an existing file of the same unit rows (an index's
    float32 sidecar), hard-linked when possible so the bytes sit on disk once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    try:
        n = sum(rows)
        target = tmp / "vectors.f32"
        if vectors is not None:
            if vectors.stat().st_size != n * dim * 4:
                raise DataError(f"{vectors} does not hold {n} x {dim} float32 vectors")
            try:
                os.link(vectors, target)
            except OSError:
                shutil.copyfile(vectors, target)
        else:
            with target.open("wb") as fh:
                written = 0
                for _off, x in iter_vectors(list(dataset.local_files), dim):
                    fh.write(unit_rows(x).tobytes())
                    written += len(x)
            if written != n:
                raise DataError("the dataset changed while it was read")
        _write_rows(dataset, tmp / "rows.arrow")
        offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        meta = {"version": FORMAT_VERSION, "rows": n, "dim": dim,
                "files": list(dataset.sources), "offsets": offsets.tolist()}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return VectorCache(path=path, n=n, dim=dim, files=tuple(dataset.sources), offsets=offsets)


def _write_rows(dataset: Dataset, target: Path) -> None:
    schema = pa.schema(list(ROW_COLUMNS.items()))
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for f in dataset.local_files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=CHUNK_ROWS,
                                                        columns=list(ROW_COLUMNS)):
                arrays = [batch.column(name).cast(typ) for name, typ in ROW_COLUMNS.items()]
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
