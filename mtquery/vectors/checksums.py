"""The checksum files of mtquery's stored files (the format; checking them is
``mtquery.vectors.integrity``).

Every protected file ``F`` has a sidecar ``F.xxh``: magic, the file's size, the number of
blocks, the block boundaries (bytes), one XXH3-64 hash per block (uint64 little-endian), then
an XXH3-64 of everything before it (a damaged sidecar is found as well). Blocks are about
``BLOCK_BYTES`` (1 MiB: a block is hashed while it is in the CPU cache, just before it is
scored) or cut where the writer says (one block per Arrow record batch). A vector file also
has ``rowhash.u64``: the XXH3-64 of every row (with its own sidecar).

Writing: ``Hasher`` (streaming), ``VectorSums`` (vectors and row hashes as rows are written),
``write_sums`` (a finished file), ``seal`` (every file of a folder). Reading: ``read_sums``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import xxhash

from mtquery.errors import DataError

SUFFIX = ".xxh"
MAGIC = b"MTQXXH\x00\x01"
BLOCK_BYTES = 1 << 20
ROW_HASHES = "rowhash.u64"
_h64 = xxhash.xxh3_64_intdigest


class Damaged(DataError):
    """A stored file does not match its checksums (or cannot be read as written)."""

    def __init__(self, path: str | Path, detail: str, remedy: str | None = None) -> None:
        self.path = Path(path)
        self.detail = detail
        self.remedy = remedy or remedy_for(self.path)
        super().__init__(f"{self.path} is damaged ({detail}); {self.remedy}")


def remedy_for(path: Path) -> str:
    """What to do about a damaged file: rebuild the index it belongs to, or remove the vector
    cache folder it is in (the next query rebuilds it)."""
    for parent in [path.parent, *path.parent.parents][:3]:
        if (parent / "manifest.json").is_file() or parent.name.endswith((".mtindex",
                                                                          "_mtindex")):
            return f"rebuild the index with 'mtquery index build' (or remove {parent})"
    return f"remove {path.parent} (a vector cache; the next query rebuilds it) and run again"


class Hasher:
    """XXH3-64 of consecutive blocks of a stream, as it is written. A block ends after
    ``block_bytes`` bytes or at ``mark()``."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self.block_bytes = max(1, int(block_bytes))
        self.offsets = [0]
        self.hashes: list[int] = []
        self._cur = xxhash.xxh3_64()
        self._filled = 0
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else \
            memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        pos = 0
        while pos < len(view):
            take = min(len(view) - pos, self.block_bytes - self._filled)
            self._cur.update(view[pos:pos + take])
            self._filled += take
            self.size += take
            pos += take
            if self._filled == self.block_bytes:
                self.mark()

    def mark(self) -> None:
        """End the current block here (nothing happens at a block boundary)."""
        if self._filled:
            self.hashes.append(self._cur.intdigest())
            self.offsets.append(self.size)
            self._cur.reset()
            self._filled = 0

    def write(self, path: str | Path) -> None:
        """Write the sidecar of ``path`` (which must hold exactly the bytes hashed)."""
        self.mark()
        path = Path(path)
        actual = path.stat().st_size
        if actual != self.size:
            raise DataError(f"{path} holds {actual} bytes, {self.size} were written; run again")
        _write_sidecar(path, self.size, self.offsets, self.hashes)


def _write_sidecar(path: Path, size: int, offsets: list[int], hashes: list[int]) -> None:
    body = (MAGIC + np.array([size, len(hashes)], "<u8").tobytes()
            + np.asarray(offsets, "<u8").tobytes() + np.asarray(hashes, "<u8").tobytes())
    side = sidecar(path)
    with open(side, "wb") as fh:
        fh.write(body + np.array([_h64(body)], "<u8").tobytes())


def sidecar(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


def write_sums(path: str | Path, cuts: list[int] | None = None,
               block_bytes: int = BLOCK_BYTES) -> None:
    """Checksums of a finished file: blocks of ``block_bytes``, also cut at the byte offsets
    ``cuts`` (e.g. where each Arrow record batch starts)."""
    path = Path(path)
    size = path.stat().st_size
    bounds = sorted({0, size, *(c for c in (cuts or []) if 0 < c < size)})
    offsets = [0]
    for lo, hi in zip(bounds, bounds[1:]):
        offsets += list(range(lo + block_bytes, hi, block_bytes)) + [hi]
    hashes = []
    with mapped(path) as buf:
        for lo, hi in zip(offsets, offsets[1:]):
            hashes.append(_h64(buf[lo:hi]))
    _write_sidecar(path, size, offsets, hashes)


def seal(folder: str | Path) -> None:
    """Write checksums for every file under ``folder`` that has none yet (call it last, when
    every file is written: an index build's staging folder)."""
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.suffix != SUFFIX and not sidecar(p).is_file():
            write_sums(p)


class VectorSums:
    """Checksums of a vector file written row block by row block: block hashes (row-aligned
    blocks of about BLOCK_BYTES) and one hash a row (``rowhash.u64`` beside it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.blocks: Hasher | None = None
        self.rows = open(self.path.with_name(ROW_HASHES), "wb")  # noqa: SIM115
        self.row_blocks = Hasher()

    def add(self, x: np.ndarray) -> None:
        """Rows exactly as written to the file (same dtype, C order)."""
        x = np.ascontiguousarray(x)
        if x.ndim != 2 or not len(x):
            return
        rb = x.shape[1] * x.itemsize
        if self.blocks is None:
            self.blocks = Hasher(max(1, BLOCK_BYTES // rb) * rb)
        self.blocks.update(x)
        hashes = row_hashes(x)
        self.rows.write(hashes.tobytes())
        self.row_blocks.update(hashes)

    def finish(self) -> None:
        self.rows.close()
        (self.blocks or Hasher()).write(self.path)
        self.row_blocks.write(self.path.with_name(ROW_HASHES))


def row_hashes(x: np.ndarray) -> np.ndarray:
    """XXH3-64 of every row of a C-contiguous 2-d array, as uint64."""
    x = np.ascontiguousarray(x)
    if not len(x):
        return np.empty(0, "<u8")
    return np.fromiter(map(_h64, x), dtype="<u8", count=len(x))  # numpy rows are buffers


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Sums:
    """A file's checksums: its size, block boundaries (bytes) and block hashes; ``checked``
    marks the blocks this process has already checked in this version of the file (its
    inode, mtime and size: a rewritten file starts unchecked)."""

    path: Path
    size: int
    offsets: np.ndarray  # (blocks + 1,) uint64
    hashes: np.ndarray  # (blocks,) uint64
    checked: np.ndarray  # (blocks,) bool, shared by every reader in the process
    rows_checked: dict = field(default_factory=dict)  # vector files: "mask" -> bool a row
    ident: tuple = ()  # (size, mtime, inode) of the file: the version these sums are of

    @property
    def all_checked(self) -> bool:
        return bool(self.checked.all())

    @property
    def blocks(self) -> int:
        return len(self.hashes)

    def blocks_of(self, lo: int, hi: int) -> tuple[int, int]:
        """Blocks [first, last) that hold bytes [lo, hi)."""
        first = int(np.searchsorted(self.offsets, lo, side="right")) - 1
        last = int(np.searchsorted(self.offsets, hi, side="left"))
        return max(0, first), min(self.blocks, max(last, first + 1))


def read_sums(path: str | Path, fresh: bool = False) -> Sums:
    """The checksums of ``path``; Damaged when the sidecar is missing or damaged, or the
    file's size is not the size it was written with. Read once per process and version of
    the file (one stat a call: this runs for every query); ``fresh``: read the sidecar now."""
    path = os.fspath(path)
    try:
        fst = os.stat(path)
    except FileNotFoundError:
        raise Damaged(path, "missing") from None
    read = _read_sums.__wrapped__ if fresh else _read_sums
    return read(path, fst.st_size, fst.st_mtime_ns, fst.st_ino)


def clear_cache() -> None:
    """Forget every checksum file read (and so which blocks were checked)."""
    _read_sums.cache_clear()


@lru_cache(maxsize=64)
def _read_sums(path: str, fsize: int, _fmtime: int, _fino: int) -> Sums:
    side = path + SUFFIX
    try:
        raw = Path(side).read_bytes()
    except FileNotFoundError:
        raise Damaged(side, "missing") from None
    if len(raw) < 32 or raw[:8] != MAGIC or _h64(raw[:-8]) != int(
            np.frombuffer(raw[-8:], "<u8")[0]):
        raise Damaged(side, "checksum file does not match its own checksum")
    size, n = (int(v) for v in np.frombuffer(raw[8:24], "<u8"))
    if len(raw) != 24 + 8 * (2 * n + 1) + 8:
        raise Damaged(side, "checksum file has the wrong length")
    offsets = np.frombuffer(raw[24:24 + 8 * (n + 1)], "<u8").astype(np.int64)
    hashes = np.frombuffer(raw[24 + 8 * (n + 1):-8], "<u8")
    if fsize != size:
        raise Damaged(path, f"{fsize} bytes, written with {size}: truncated or extended")
    return Sums(Path(path), size, offsets, hashes, np.zeros(n, dtype=bool),
                ident=(fsize, _fmtime, _fino))


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[memoryview]:
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            yield memoryview(b"")
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                yield view
            finally:
                view.release()
