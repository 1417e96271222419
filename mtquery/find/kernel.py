"""Scoring kernels: ``x . v`` for every stored unit vector ``x`` and one vector ``v``, in
bounded blocks, at close to memory bandwidth.

A store (``mtquery.vectors.store``) holds unit rows as float32 or float16. Its vector file is
read block by block into one reused buffer (``os.preadv``): the page cache serves repeated
scans, and the process's resident memory stays a few blocks whatever the store's size (a
memory map would keep every page it touched mapped). float32 blocks go straight to BLAS;
float16 blocks are widened exactly with integer operations (NumPy's own float16 cast runs
about 5x slower): the half's bits shifted into a float32's exponent and mantissa and the
scale 2**-112 folded into the vector, which is exact for normal, subnormal and zero values.
Rows with zero or invalid vectors (NaN in the store, listed in ``invalid.npy``) score NaN.

Streamed Arrow batches (remote data, no store) are scored by ``batch_dot``: one float32
matrix-vector product per batch, each row's own norm dividing its score.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from mtquery.vectors.store import VectorStore

#: rows per block read from the store (about 1.5 MB of float16 x 768: cache-sized work)
BLOCK_ROWS = 1024
#: blocks per read call (one ``preadv`` of about 48 MB, then scored block by block)
READ_BLOCKS = 32
#: int32 mask that clears the bits 30..28 a sign-extended negative half leaves behind
_HALF_MASK = np.int32(-1879048193)  # 0x8FFFFFFF
_HALF_SCALE = 2.0 ** 112


class StoreScanner:
    """Scores row ranges / row ids of one store against one vector ``v`` (any norm)."""

    def __init__(self, store: VectorStore, v: np.ndarray) -> None:
        self.store = store
        self.dim = store.dim
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(v))
        self.norm = norm if norm > 0 and np.isfinite(norm) else 1.0
        self.half = store.dtype == "float16"
        # float16: the widened bits carry the value times 2**-112, the vector 2**112 (of a
        # unit vector, so the products stay finite; the norm multiplies the result)
        self.v = (v / self.norm * (_HALF_SCALE if self.half else 1.0)).astype(np.float32)
        self.itemsize = 2 if self.half else 4
        self.row_bytes = self.dim * self.itemsize
        rows = BLOCK_ROWS * READ_BLOCKS
        self._raw = np.empty(rows * self.dim, dtype=np.int16 if self.half else np.float32)
        self._wide = np.empty((BLOCK_ROWS, self.dim), dtype=np.int32) if self.half else None
        self._invalid = store.invalid_ids()

    # ------------------------------------------------------------ blocks

    def _read(self, fd: int, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of the vector file as a (hi - lo, dim) view of the read buffer."""
        n = hi - lo
        buf = self._raw[: n * self.dim]
        view = memoryview(buf).cast("B")
        want, got = n * self.row_bytes, 0
        while got < want:
            k = os.preadv(fd, [view[got:want]], lo * self.row_bytes + got)
            if k <= 0:
                raise OSError(f"short read of {self.store.vector_file}")
            got += k
        return buf.reshape(n, self.dim)

    def _dot(self, block: np.ndarray, out: np.ndarray) -> None:
        """``out[i] = block[i] . v`` (block raw: int16 bits of halves, or float32)."""
        if not self.half:
            np.dot(block, self.v, out=out)
        else:
            for lo in range(0, len(block), BLOCK_ROWS):
                part = block[lo:lo + BLOCK_ROWS]
                wide = self._wide[: len(part)]
                np.left_shift(part, 13, out=wide, dtype=np.int32)
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
        else:
            pos = np.searchsorted(rows, bad)
            ok = pos < len(rows)
            pos, bad = pos[ok], bad[ok]
            out[pos[rows[pos] == bad]] = np.nan

    # ------------------------------------------------------------ public

    def ranges(self, lo: int = 0, hi: int | None = None,
               step: int = BLOCK_ROWS * READ_BLOCKS) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, scores) per read of rows [lo, hi), in order."""
        hi = self.store.n if hi is None else hi
        with open(self.store.vector_file, "rb", buffering=0) as fh:
            for a in range(lo, hi, step):
                b = min(hi, a + step)
                out = np.empty(b - a, dtype=np.float32)
                self._dot(self._read(fh.fileno(), a, b), out)
                self._mark_invalid(a, b, out)
                yield a, out

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Scores of sorted row ids: each read covers a run of nearby ids (a gap of more than
        a block starts a new read), so clustered ids (a region of an optimised dataset) read
        little and scattered ones no more than a full scan."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty(len(ids), dtype=np.float32)
        if not len(ids):
            return out
        step = BLOCK_ROWS * READ_BLOCKS
        with open(self.store.vector_file, "rb", buffering=0) as fh:
            i = 0
            while i < len(ids):
                a = int(ids[i])
                j = int(np.searchsorted(ids, a + step, side="left"))
                gaps = np.flatnonzero(np.diff(ids[i:j]) > BLOCK_ROWS)
                if gaps.size:
                    j = i + int(gaps[0]) + 1
                b = int(ids[j - 1]) + 1
                block = self._read(fh.fileno(), a, b)
                local = ids[i:j] - a
                sub = out[i:j]
                if len(local) == b - a:
                    self._dot(block, sub)
                else:
                    self._dot(np.ascontiguousarray(block[local]), sub)
                self._mark_invalid(a, b, sub, ids[i:j])
                i = j
        return out


def store_dot(store: VectorStore, v: np.ndarray, ids: np.ndarray | None = None,
              on_rows: Callable[[int], None] | None = None) -> np.ndarray:
    """``x . v`` for every row (or the sorted row ``ids``) of ``store``; NaN for rows with
    invalid vectors. ``on_rows(n)`` is called as rows are done (progress)."""
    scanner = StoreScanner(store, v)
    if ids is not None:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty(len(ids), dtype=np.float32)
        step = BLOCK_ROWS * READ_BLOCKS * 4
        for lo in range(0, len(ids), step):
            out[lo:lo + step] = scanner.rows(ids[lo:lo + step])
            if on_rows is not None:
                on_rows(len(ids[lo:lo + step]))
        return out
    out = np.empty(store.n, dtype=np.float32)
    for a, s in scanner.ranges():
        out[a:a + len(s)] = s
        if on_rows is not None:
            on_rows(len(s))
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
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = (x @ v32) / np.sqrt(np.einsum("ij,ij->i", x, x))
    s[~np.isfinite(s)] = np.nan
    out[valid] = s
    return out
