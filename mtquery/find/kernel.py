"""Scoring kernels: ``x . v`` for every stored unit vector ``x`` and one vector ``v``, block by
block, at close to memory bandwidth, every block checked before it is used.

A store (``mtquery.vectors.store``) holds unit rows as float32 or float16, with XXH3 block
checksums (``mtquery.vectors.integrity``). The scanner maps the vector file and walks it in
its checksum blocks (about 1 MiB, whole rows): each block is hashed and then scored while it
is still in the CPU cache; the pages already scored are released from the process
(``madvise(MADV_DONTNEED)``: the page cache keeps them), so resident memory stays a few
blocks whatever the store's size. float32 blocks go straight to BLAS; float16 blocks are
widened exactly with integer operations (NumPy's own float16 cast runs about 5x slower): the
half's bits shifted into a float32's exponent and mantissa and the scale 2**-112 folded into
the vector, which is exact for normal, subnormal and zero values. Rows with zero or invalid
vectors (NaN in the store, listed in ``invalid.npy``) score NaN.

Streamed Arrow batches (remote data, no store) are scored by ``batch_dot``: one float32
matrix-vector product per batch, each row's own norm dividing its score.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from mtquery.vectors import integrity
from mtquery.vectors.store import VectorStore

#: bytes of float32 one BLAS call gets: small enough for the CPU cache, and for OpenBLAS to
#: stay on one thread (a 3 MB matrix-vector product went multi-threaded and ran 10x slower
#: on a busy 2-core machine: benchmarks/find_bench.py)
DOT_BYTES = 1 << 20
#: bytes scored between two releases of scored pages
RELEASE_BYTES = 64 << 20
#: ids further apart than this many rows start a new run (gathered separately)
RUN_GAP = 4096
#: rows a scan thread gets at least
MIN_SHARE = 1 << 17
#: int32 mask that clears the bits 30..28 a sign-extended negative half leaves behind
_HALF_MASK = np.int32(-1879048193)  # 0x8FFFFFFF
_HALF_SCALE = 2.0 ** 112


class StoreScanner:
    """Scores the rows of one store against one vector ``v`` (any norm). Use as a context
    manager (or call ``close``): it holds the file's map."""

    def __init__(self, store: VectorStore, v: np.ndarray) -> None:
        self.store = store
        self.rowmap = store.rowmap
        self.n, self.dim = store.n, store.dim
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(v))
        self.norm = norm if norm > 0 and np.isfinite(norm) else 1.0
        self.half = store.dtype == "float16"
        # float16: the widened bits carry the value times 2**-112, the vector 2**112 (of a
        # unit vector, so the products stay finite; the norm multiplies the result)
        self.v = (v / self.norm * (_HALF_SCALE if self.half else 1.0)).astype(np.float32)
        self.row_bytes = self.dim * (2 if self.half else 4)
        self.step = max(1, DOT_BYTES // (4 * self.dim))  # rows a BLAS call gets
        self._wide = np.empty((self.step, self.dim), dtype=np.int32) if self.half else None
        self._invalid = store.invalid_ids()
        self._fh = self._mm = self._buf = None
        self.x = np.zeros((0, self.dim), np.int16 if self.half else np.float32)
        if self.n:
            self.sums = integrity.read_sums(store.vector_file)
            self._fh = open(store.vector_file, "rb")  # noqa: SIM115 (closed in close())
            self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            self._buf = memoryview(self._mm)
            self.x = np.frombuffer(self._mm, dtype=np.int16 if self.half else np.float32,
                                   count=self.n * self.dim).reshape(self.n, self.dim)
        self._released = 0

    def __enter__(self) -> StoreScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.x = np.zeros((0, self.dim), np.float32)
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a caller still holds a view: the map goes with it
                pass
            self._fh.close()
            self._mm = self._fh = None

    # ------------------------------------------------------------ blocks

    def _dot(self, block: np.ndarray, out: np.ndarray) -> None:
        """``out[i] = block[i] . v`` (block raw: int16 bits of halves, or float32)."""
        step = self.step
        for lo in range(0, len(block), step):
            part = block[lo:lo + step]
            if not self.half:
                np.dot(part, self.v, out=out[lo:lo + len(part)])
                continue
            wide = self._wide[: len(part)]
            np.copyto(wide, part)  # sign-extending widening: int32(h)
            np.left_shift(wide, 13, out=wide)
            np.bitwise_and(wide, _HALF_MASK, out=wide)
            np.dot(wide.view(np.float32), self.v, out=out[lo:lo + len(part)])
        if self.norm != 1.0:
            out *= np.float32(self.norm)

    def _mark_invalid(self, lo: int, hi: int, out: np.ndarray,
                      rows: np.ndarray | None = None) -> None:
        if not self._invalid.size:
            return
        a, b = np.searchsorted(self._invalid, [lo, hi])
        if a == b:
            return
        bad = self._invalid[a:b]
        if rows is None:
            out[bad - lo] = np.nan
            return
        pos = np.searchsorted(rows, bad)
        ok = pos < len(rows)
        pos, bad = pos[ok], bad[ok]
        out[pos[rows[pos] == bad]] = np.nan

    def _release(self, upto_row: int) -> None:
        """Drop the mapped pages below ``upto_row`` from this process (scored already)."""
        end = upto_row * self.row_bytes
        if end - self._released < RELEASE_BYTES and upto_row < self.n:
            return
        page = mmap.PAGESIZE
        a = (self._released // page) * page
        z = (end // page) * page
        if z > a:
            self._mm.madvise(mmap.MADV_DONTNEED, a, z - a)
            self._released = z

    # ------------------------------------------------------------ public

    def ranges(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, scores) per checksum block of rows [lo, hi), in order."""
        hi = self.n if hi is None else hi
        if hi <= lo:
            return
        rb = self.row_bytes
        self._released = max(self._released, (lo * rb // mmap.PAGESIZE) * mmap.PAGESIZE)
        for a, b in integrity.scan_blocks(self.sums, self._buf, lo * rb, hi * rb):
            r0, r1 = a // rb, b // rb
            out = np.empty(r1 - r0, dtype=np.float32)
            self._dot(self.x[r0:r1], out)
            self._mark_invalid(r0, r1, out)
            self._release(r1)
            yield r0, out

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Scores of sorted row ids: runs of nearby ids are scored together (a whole range
        when dense), each run's rows checked by their blocks or their row hashes, whichever
        hashes less."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty(len(ids), dtype=np.float32)
        if not len(ids):
            return out
        cuts = np.flatnonzero(np.diff(ids) > RUN_GAP) + 1
        for i, j in zip(np.r_[0, cuts], np.r_[cuts, len(ids)]):
            run = ids[i:j]
            a, b = int(run[0]), int(run[-1]) + 1
            sub = out[i:j]
            if b - a == len(run):  # contiguous: block by block, as a scan
                for r0, s in self.ranges(a, b):
                    sub[r0 - a:r0 - a + len(s)] = s
                continue
            by_block = integrity.check_rows(self.sums, self._buf, run, self.row_bytes)
            block = self.x[run]
            if not by_block:
                integrity.verify_rows(self.store.vector_file, block, run)
            self._dot(block, sub)
            self._mark_invalid(a, b, sub, run)
            self._release(b)
        return out


def scan_threads() -> int:
    """Threads a whole-store scan uses: the CPUs this process may run on, at most 4 (NumPy
    and BLAS release the GIL; each thread walks its own share of the file)."""
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(4, os.cpu_count() or 1))


def store_dot(store: VectorStore, v: np.ndarray, ids: np.ndarray | None = None,
              on_rows: Callable[[int], None] | None = None,
              threads: int | None = None) -> np.ndarray:
    """``x . v`` for every row (or the sorted row ``ids``) of ``store``; NaN for rows with
    invalid vectors. Large scans are split in ``threads`` contiguous shares (default
    ``scan_threads()``), each with its own scanner. ``on_rows(n)`` is called as rows are
    done (progress)."""
    n = store.n if ids is None else len(ids)
    out = np.empty(n, dtype=np.float32)
    ids = None if ids is None else np.asarray(ids, dtype=np.int64)
    parts = threads or scan_threads()
    parts = max(1, min(parts, n // MIN_SHARE))
    cuts = [n * i // parts for i in range(parts + 1)]

    def share(i: int) -> None:
        lo, hi = cuts[i], cuts[i + 1]
        with StoreScanner(store, v) as scanner:
            if ids is not None:
                for a in range(lo, hi, 1 << 18):
                    b = min(hi, a + (1 << 18))
                    out[a:b] = scanner.rows(ids[a:b])
                    if on_rows is not None:
                        on_rows(b - a)
                return
            for a, s in scanner.ranges(lo, hi):
                out[a:a + len(s)] = s
                if on_rows is not None:
                    on_rows(len(s))

    if parts == 1:
        share(0)
        return out
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(parts) as pool:
        for f in [pool.submit(share, i) for i in range(parts)]:
            f.result()  # an error (a damaged block) is raised here
    return out


def batch_dot(column: pa.Array | pa.ChunkedArray, v: np.ndarray, dim: int) -> np.ndarray:
    """``unit(x) . v`` for each vector of an Arrow embedding column (fixed-size or plain
    lists); NaN for null, zero or non-finite vectors."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    out = np.full(len(column), np.nan, dtype=np.float32)
    if not len(column):
        return out
    valid = np.asarray(column.is_valid())
    filled = column.filter(pa.array(valid)) if column.null_count else column
    x = np.asarray(filled.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    x = x.reshape(-1, dim)
    v32 = np.asarray(v, dtype=np.float32)
    dots = np.empty(len(x), np.float32)
    step = max(1, DOT_BYTES // (4 * dim))
    for lo in range(0, len(x), step):  # cache-sized, single-threaded BLAS calls
        np.dot(x[lo:lo + step], v32, out=dots[lo:lo + step])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = dots / np.sqrt(np.einsum("ij,ij->i", x, x))
    s[~np.isfinite(s)] = np.nan
    out[valid] = s
    return out
