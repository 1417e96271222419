"""The vector store: one place for the things every search path shares.

- **Unit vectors.** ``unit_rows`` L2-normalises float32 rows; a zero or non-finite vector
  becomes a NaN row, which never matches (one rule for exact scan, index, eval and validate).
- **Top-k.** ``top_k`` / ``top_k_rows`` pick the best scores, ties broken by the global row id
  (lower first), NaN / -inf scores dropped: every path ranks identically.
- **Row ids.** A row id is a position in the dataset: files in the dataset's order, rows in
  file order (DuckDB's ``source_file`` / ``source_row`` map onto it, ``RowMap``).
- **Fingerprint.** A local dataset's identity: resolved paths, sizes, mtimes, row counts.
- **Result columns.** ``RESULT_TYPES`` and ``result_table``: the columns of a kNN answer.
- **The sidecar.** ``VectorStore`` is a directory ``meta.json`` + ``vectors.f32`` (or
  ``.f16``, unit rows, memory-mapped) + ``rows.arrow`` (result columns, Arrow IPC, record
  batches of ``ROWS_BATCH`` rows) + ``invalid.npy``, each with XXH3 checksums
  (``mtquery.vectors.integrity``: ``*.xxh``, ``rowhash.u64``) checked as they are read. The
  exact scan keeps one in the cache (``mtquery.io.cache``); an ANN index keeps one inside its
  directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.io.columns import STANDARD, Roles
from mtquery.vectors import integrity, rowsfile
from mtquery.vectors.ranking import (  # noqa: F401  (re-exported: the store's API)
    RESULT_COLUMNS,
    RESULT_SCHEMA,
    RESULT_TYPES,
    SKIPPED_KEY,
    cast_rows,
    distances,
    empty_rows,
    invalid_rows,
    result_table,
    skipped_of,
    timestamp_text,
    top_k,
    top_k_rows,
    unit_query,
    unit_rows,
    with_skipped,
)

FORMAT_VERSION = 4  # 4: checksums (mtquery.vectors.integrity), rows.arrow in ROWS_BATCH rows
CHUNK_ROWS = 65_536
SCAN_CHUNK = 262_144
#: rows of a record batch of rows.arrow: the unit the metadata of a few rows is checked in
ROWS_BATCH = 256

DTYPES = {"float32": (np.float32, "vectors.f32"), "float16": (np.float16, "vectors.f16")}


# ---------------------------------------------------------------- dataset identity


def file_rows(path: str | Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def fingerprint(files: Sequence[str | Path]) -> list[dict]:
    """Resolved path, size, mtime and row count (Parquet footer) of every local file."""
    out = []
    for f in files:
        p = Path(f).resolve()
        try:
            st = p.stat()
        except OSError as exc:
            raise DataError(f"cannot read {f}: {exc.strerror or exc}") from exc
        out.append({"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "rows": file_rows(p)})
    return out


@dataclass(frozen=True)
class RowMap:
    """Row ids <-> (file, row in file): files in dataset order, offsets their first ids."""

    files: tuple[str, ...]  # resolved paths
    offsets: np.ndarray  # (len(files) + 1,)

    @classmethod
    def from_fingerprint(cls, fp: list[dict]) -> RowMap:
        rows = [int(f["rows"]) for f in fp]
        return cls(tuple(f["path"] for f in fp),
                   np.concatenate([[0], np.cumsum(rows)]).astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    def global_rows(self, files: Sequence[str] | np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Row ids of (file, row) pairs; files as DuckDB names them (any spelling)."""
        index = {f: i for i, f in enumerate(self.files)}
        names, inv = np.unique(np.asarray(files, dtype=object).astype(str), return_inverse=True)
        base = np.empty(len(names), np.int64)
        for j, name in enumerate(names):
            i = index.get(name, index.get(str(Path(name).resolve())))
            if i is None:
                raise DataError(f"file {name} is not part of the stored dataset; rebuild it")
            base[j] = self.offsets[i]
        return base[inv.reshape(-1)] + np.asarray(rows, dtype=np.int64)


# ---------------------------------------------------------------- reading vectors


def iter_vectors(files: Sequence[str | Path], dim: int | None = None,
                 column: str = "embedding") -> Iterator[tuple[int, np.ndarray]]:
    """(first row id, float32 matrix) per chunk of about CHUNK_ROWS rows, files in order.
    Files of small row groups are read several groups at a time with threads (2.4x faster
    than iter_batches, measured for the index build)."""
    import pyarrow.parquet as pq

    from mtquery.standard.schema import embedding_matrix

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
            chunks = (pf.read_row_groups(g, columns=[column], use_threads=True).column(0)
                      for g in groups)
        else:
            chunks = (b.column(0) for b in pf.iter_batches(batch_size=CHUNK_ROWS,
                                                           columns=[column]))
        for col in chunks:
            x = embedding_matrix(col)
            if dim is not None and x.shape[1] != dim:
                raise DataError(f"mixed embedding dimensions: {x.shape[1]} in {f}, {dim} "
                                "elsewhere")
            dim = x.shape[1]
            yield offset, x
            offset += len(x)


# ---------------------------------------------------------------- the sidecar


@dataclass(frozen=True)
class VectorStore:
    """A dataset's unit vectors (memory-mapped) and result columns, addressed by row id."""

    path: Path
    dim: int
    dtype: str  # float32 | float16
    fingerprint: tuple[dict, ...]
    rows_batch: int = ROWS_BATCH

    @property
    def rowmap(self) -> RowMap:
        return RowMap.from_fingerprint(list(self.fingerprint))

    @property
    def n(self) -> int:
        return sum(int(f["rows"]) for f in self.fingerprint)

    @property
    def vector_file(self) -> Path:
        return self.path / DTYPES[self.dtype][1]

    def matrix(self) -> np.ndarray:
        """(n, dim) unit vectors, memory-mapped (NaN rows: zero / invalid vectors)."""
        if self.n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        st = self.vector_file.stat()  # a rebuilt file (same path) is mapped anew
        return _open_matrix(str(self.vector_file), self.n, self.dim, self.dtype, st.st_ino,
                            st.st_mtime_ns)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Unit vectors of row ids, each checked against its row hash."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.asarray(self.matrix())[ids]
        integrity.verify_rows(self.vector_file, rows, ids)
        return np.asarray(rows, dtype=np.float32)

    def rows(self, ids: np.ndarray) -> pa.Table:
        """Result columns of row ids, in that order: only the record batches holding them are
        read, each checked against its checksum first."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return empty_rows()
        path = self.path / "rows.arrow"
        if ids.min() < 0 or ids.max() >= self.n:
            raise DataError(f"row ids outside the vector store at {self.path}")
        wanted, inv = np.unique(ids // self.rows_batch, return_inverse=True)
        inv = inv.reshape(-1)
        batches = rowsfile.read_batches(path, wanted, RESULT_SCHEMA)
        starts = np.concatenate([[0], np.cumsum([b.num_rows for b in batches])])
        pos = starts[inv] + ids - wanted[inv] * self.rows_batch
        if np.any(pos >= starts[inv + 1]):
            raise integrity.Damaged(path, "a record batch holds fewer rows than written")
        return pa.Table.from_batches(batches, RESULT_SCHEMA).take(pa.array(pos))

    def scores(self, q: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of a unit query with every (or the given) row, in chunks so
        memory stays bounded; invalid rows score NaN. Every row read is checked: a whole scan
        block by block (each hashed just before it is scored, while in the CPU cache), a set
        of rows by their row hashes or their blocks, whichever hashes less."""
        x = np.asarray(self.matrix())  # a plain view of the map: cheap slices
        n = self.n if ids is None else len(ids)
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        sums = integrity.read_sums(self.vector_file)
        if ids is None and (sums.all_checked or not integrity.enabled()):
            for lo in range(0, n, SCAN_CHUNK):  # checked before in this process: plain scan
                out[lo:lo + SCAN_CHUNK] = np.asarray(x[lo:lo + SCAN_CHUNK],
                                                     dtype=np.float32) @ q
            return out
        rb = self.dim * x.itemsize
        buf = memoryview(x.reshape(-1).view(np.uint8))
        if ids is None:  # first read: each block hashed then scored, on several threads
            f32 = x.dtype == np.float32

            def score(a: int, b: int) -> None:
                lo, hi = a // rb, b // rb
                if f32:
                    np.dot(x[lo:hi], q, out=out[lo:hi])
                else:
                    out[lo:hi] = x[lo:hi].astype(np.float32) @ q

            integrity.scan_parallel(sums, buf, score)
            return out
        ids = np.asarray(ids, dtype=np.int64)
        by_block = integrity.check_rows(sums, buf, ids, rb)
        for lo in range(0, n, SCAN_CHUNK):
            sel = ids[lo:lo + SCAN_CHUNK]
            block = x[sel]
            if not by_block:
                integrity.verify_rows(self.vector_file, block, sel)
            out[lo:lo + len(sel)] = np.asarray(block, dtype=np.float32) @ q
        return out

    def search(self, q: np.ndarray, k: int, ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (row ids, similarities) among all rows or ``ids`` (sorted)."""
        s = self.scores(q, ids)
        rid = np.arange(self.n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        pos, sc = top_k(s, k, rid)
        return rid[pos], sc

    def invalid_ids(self) -> np.ndarray:
        """Row ids of the zero / invalid vectors (never returned by a search), checked."""
        path = self.path / "invalid.npy"
        try:
            st = path.stat()
        except OSError as exc:
            raise integrity.Damaged(path, exc.strerror or "missing") from exc
        return _invalid_ids(str(path), self.n, st.st_ino, st.st_mtime_ns, st.st_size)

    def count_invalid(self, ids: np.ndarray | None = None) -> int:
        """How many of all (or of the given, sorted) row ids hold invalid vectors."""
        bad = self.invalid_ids()
        return int(bad.size if ids is None else np.isin(bad, ids, assume_unique=True).sum())


@lru_cache(maxsize=8)
def _invalid_ids(path: str, n: int, _ino: int, _mtime_ns: int, _size: int) -> np.ndarray:
    """invalid.npy checked and read once per version of the file and process."""
    integrity.verify_file(path)
    try:
        bad = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise integrity.Damaged(path, f"unreadable: {str(exc).splitlines()[0]}") from exc
    if bad.ndim != 1 or bad.dtype.kind != "i" or (bad.size and (
            bad.min() < 0 or bad.max() >= n)):
        raise integrity.Damaged(path, "not a list of row ids of this store")
    bad.setflags(write=False)
    return bad


integrity.FORGET.append(_invalid_ids.cache_clear)


@lru_cache(maxsize=8)
def _open_matrix(path: str, n: int, dim: int, dtype: str, _ino: int, _mtime_ns: int
                 ) -> np.ndarray:
    """One mapping per file and process: re-mapping per query would fault every page again."""
    return np.memmap(path, dtype=DTYPES[dtype][0], mode="r", shape=(n, dim))


def load_store(path: str | Path, fp: list[dict] | None = None) -> VectorStore | None:
    """The store at ``path`` if complete (and built from ``fp`` when given), else None."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not integrity.sidecar(meta_path).is_file():
        return None  # none, or written before checksums (format 3): build it again
    raw = integrity.read_verified(meta_path)  # damage: integrity.Damaged, named
    try:
        meta = json.loads(raw)
        if meta.get("version") != FORMAT_VERSION or meta.get("dtype") not in DTYPES:
            return None
        from mtquery.io.manifests import StoreMeta  # on use: cold start

        try:
            StoreMeta.from_dict(meta, meta_path)  # fields and their types
        except DataError:
            return None  # another shape: built again
        store = VectorStore(path=path, dim=int(meta["dim"]), dtype=meta["dtype"],
                            fingerprint=tuple(meta["fingerprint"]),
                            rows_batch=int(meta.get("rows_batch", ROWS_BATCH)))
        if fp is not None and list(store.fingerprint) != fp:
            return None
        vec = store.vector_file
        size = np.dtype(DTYPES[store.dtype][0]).itemsize * store.n * store.dim
        if not vec.is_file() or not (path / "rows.arrow").is_file():
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    integrity.read_sums(vec)  # a truncated or extended file is named here
    integrity.read_sums(path / "rows.arrow")
    if vec.stat().st_size != size:
        raise integrity.Damaged(vec, f"{vec.stat().st_size} bytes, {size} expected")
    return store


def write_store(staging: Path, fp: list[dict], dtype: str = "float32",
                progress=None, roles: Roles = STANDARD) -> VectorStore:
    """Write a store into the (new, empty) directory ``staging`` from the files of ``fp``
    (read through ``roles``, mtquery.io.columns); the caller renames it into place. Reads
    each file's vectors once."""
    from mtquery.progress import emit

    if dtype not in DTYPES:
        raise DataError(f"sidecar dtype must be float32 or float16 (got {dtype!r})")
    np_dtype, name = DTYPES[dtype]
    n = sum(int(f["rows"]) for f in fp)
    files = [f["path"] for f in fp]
    dim, written, invalid = None, 0, []
    sums = integrity.VectorSums(staging / name)  # block and row checksums as rows are written
    with open(staging / name, "wb") as fh:
        for off, x in iter_vectors(files, column=roles.vector):
            dim = dim or x.shape[1]
            u = unit_rows(x)
            if len(u):
                invalid.append(off + np.flatnonzero(np.isnan(u[:, 0])))
            v = u.astype(np_dtype, copy=False)
            fh.write(v.tobytes())
            sums.add(v)
            written += len(x)
            emit(progress, "reading vectors", len(x), total=n, unit="rows")
    sums.finish()
    if written != n:
        raise DataError("the dataset changed while it was read; run again")
    write_rows(files, staging / "rows.arrow", roles)
    bad = np.concatenate(invalid).astype(np.int64) if invalid else np.empty(0, np.int64)
    np.save(staging / "invalid.npy", bad, allow_pickle=False)
    integrity.write_sums(staging / "invalid.npy")
    meta = {"version": FORMAT_VERSION, "dim": int(dim or 0), "dtype": dtype,
            "rows": n, "invalid_rows": int(bad.size), "rows_batch": ROWS_BATCH,
            "fingerprint": fp, **({} if roles.standard else {"columns": roles.to_dict()})}
    (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    integrity.write_sums(staging / "meta.json")
    return VectorStore(path=staging, dim=int(dim or 0), dtype=dtype, fingerprint=tuple(fp))


def write_rows(files: Sequence[str], target: Path, roles: Roles = STANDARD) -> None:
    """The result columns of ``files`` as ``rows.arrow`` (``mtquery.vectors.rowsfile``),
    derived through ``roles`` for files of another shape (``mtquery.io.standardize``)."""
    import pyarrow.parquet as pq

    from mtquery.io.standardize import source_columns, standard_rows

    def tables():
        for f in files:
            pf = pq.ParquetFile(f)
            cols = source_columns(roles, pf.schema_arrow.names, RESULT_COLUMNS)
            first = 0
            for batch in pf.iter_batches(batch_size=CHUNK_ROWS, columns=cols):
                t = standard_rows(pa.Table.from_batches([batch]), roles, RESULT_COLUMNS,
                                  str(f), first, files)
                first += batch.num_rows
                yield cast_rows(t)

    rowsfile.write_batches(tables(), target, RESULT_SCHEMA, ROWS_BATCH)
