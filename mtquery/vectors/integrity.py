"""Checksums of the files mtquery writes and later trusts (vector stores, ``rows.arrow``,
``invalid.npy``, codes, manifests), so that damage on disk is found before a wrong answer
leaves the program.

Every protected file ``F`` has a sidecar ``F.xxh``: the file's size, its block boundaries and
one XXH3-64 hash per block, then an XXH3-64 of the sidecar itself (a damaged sidecar is
found as well). Blocks are about ``BLOCK_BYTES`` (1 MiB: a block is hashed while it is in the
CPU cache, just before it is scored) or cut where the writer says (one block per Arrow record
batch, so a few rows are checked without hashing the whole file). A vector file also has
``rowhash.u64`` (XXH3-64 of every row, itself with a sidecar): the few hundred rows an index
reranks are checked one by one.

API: ``Hasher`` (streaming writer), ``VectorSums`` (vectors + row hashes while they are
written), ``write_sums`` (an existing file), ``seal`` (every file of a folder);
``read_sums``, ``verify_file``, ``verify_blocks``, ``scan_blocks``, ``verify_rows`` (reads);
``check_tree`` / ``verify_tree`` (a whole index or store). Damage raises ``Damaged``, a
DataError whose one line names the file and what to do.
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
#: what checking costs, to pick between row hashes and block hashes for a set of rows
#: (measured on the shared CI box: ~0.2 us a row hash call, ~8 GB/s block hashing)
ROW_CHECK_US = 0.2
HASH_BYTES_PER_US = 8000.0
#: what an index directory must hold (besides store/vectors.f32 or .f16)
INDEX_FILES = ("manifest.json", "ivf.faiss", "store/meta.json", "store/rows.arrow",
               "store/invalid.npy", "store/rowhash.u64")
_h64 = xxhash.xxh3_64_intdigest
_ENABLED = [True]


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


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Skip read-time checks inside the block (benchmarks/integrity_bench.py measures their
    cost this way); writes still write checksums."""
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = True


def enabled() -> bool:
    return _ENABLED[0]


# ---------------------------------------------------------------- writing


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
    with _mapped(path) as buf:
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


def read_sums(path: str | Path) -> Sums:
    """The checksums of ``path``; Damaged when the sidecar is missing or damaged, or the
    file's size is not the size it was written with."""
    path = os.fspath(path)  # plain strings: this runs for every query
    side = path + SUFFIX
    try:
        st = os.stat(side)
        fst = os.stat(path)
    except FileNotFoundError as exc:
        raise Damaged(exc.filename or side, "missing") from None
    return _read_sums(path, side, st.st_size, st.st_mtime_ns, st.st_ino,
                      fst.st_size, fst.st_mtime_ns, fst.st_ino)


#: caches of checked contents to drop with ``forget`` (rows.arrow readers, invalid masks)
FORGET: list = []


def forget() -> None:
    """Forget which blocks this process has checked (benchmarks: a first read each time)."""
    _read_sums.cache_clear()
    for clear in FORGET:
        clear()


@lru_cache(maxsize=64)
def _read_sums(path: str, side: str, _size: int, _mtime: int, _ino: int, fsize: int,
               _fmtime: int, _fino: int) -> Sums:
    raw = Path(side).read_bytes()
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
def _mapped(path: Path) -> Iterator[memoryview]:
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


def _mismatch(sums: Sums, b: int) -> Damaged:
    lo, hi = int(sums.offsets[b]), int(sums.offsets[b + 1])
    return Damaged(sums.path, f"checksum mismatch in bytes {lo}-{hi}")


def verify_blocks(sums: Sums, buf: memoryview, blocks: np.ndarray | range) -> None:
    """Check the given blocks of ``buf`` (the file's bytes, e.g. a memory map) that this
    process has not checked yet."""
    if not _ENABLED[0]:
        return
    off, hashes, checked = sums.offsets, sums.hashes, sums.checked
    for b in blocks:
        if checked[b]:
            continue
        if _h64(buf[off[b]:off[b + 1]]) != hashes[b]:
            raise _mismatch(sums, int(b))
        checked[b] = True


def verify_file(path: str | Path, force: bool = False) -> Sums:
    """Check a whole file against its checksums: the blocks this process has not checked
    yet (every block, and always, when ``force``)."""
    sums = read_sums(path)
    if force or (_ENABLED[0] and not sums.all_checked):
        with _mapped(Path(path)) as buf:
            for b in range(sums.blocks):
                if not force and sums.checked[b]:
                    continue
                if _h64(buf[sums.offsets[b]:sums.offsets[b + 1]]) != sums.hashes[b]:
                    raise _mismatch(sums, b)
                sums.checked[b] = True
    return sums


def read_verified(path: str | Path) -> bytes:
    """The bytes of a small file (a manifest), checked."""
    path = Path(path)
    data = path.read_bytes()
    sums = read_sums(path)
    if _ENABLED[0]:
        verify_blocks(sums, memoryview(data), range(sums.blocks))
    return data


def scan_blocks(sums: Sums, buf: memoryview, lo: int, hi: int
                ) -> Iterator[tuple[int, int]]:
    """Byte ranges [a, b) covering [lo, hi), block by block, each checked just before it is
    yielded (the caller reads it while it is still in the CPU cache)."""
    first, last = sums.blocks_of(lo, hi)
    off, hashes, checked = sums.offsets, sums.hashes, sums.checked
    check = _ENABLED[0]
    for b in range(first, last):
        a, z = int(off[b]), int(off[b + 1])
        if check and not checked[b]:
            if _h64(buf[a:z]) != hashes[b]:
                raise _mismatch(sums, b)
            checked[b] = True
        yield max(a, lo), min(z, hi)


def row_blocks(sums: Sums, ids: np.ndarray, row_bytes: int) -> np.ndarray:
    """The blocks of a vector file (row-aligned blocks, ``VectorSums``) holding rows ``ids``."""
    if sums.blocks == 0:
        return np.empty(0, np.int64)
    per_block = max(1, int(sums.offsets[1]) // row_bytes)
    return np.unique(np.asarray(ids, dtype=np.int64) // per_block)


def check_rows(sums: Sums, buf: memoryview, ids: np.ndarray, row_bytes: int) -> bool:
    """Check the blocks holding rows ``ids`` when hashing them costs less than checking the
    rows one by one (dense sets of rows); True when done, False when the caller should
    check the gathered rows with ``verify_rows``."""
    if not _ENABLED[0]:
        return True
    blocks = row_blocks(sums, ids, row_bytes)
    blocks = blocks[~sums.checked[blocks]]
    if not blocks.size:
        return True
    block_bytes = int(sums.offsets[1])
    if blocks.size * block_bytes / HASH_BYTES_PER_US > len(ids) * ROW_CHECK_US:
        return False
    verify_blocks(sums, buf, blocks)
    return True


def verify_rows(path: str | Path, rows: np.ndarray, ids: np.ndarray) -> None:
    """Check rows (gathered from the vector file ``path`` by row id) against the row hashes
    written with it; on a mismatch, find which file is damaged."""
    if not _ENABLED[0] or not len(ids):
        return
    ids = np.asarray(ids, dtype=np.int64)
    rows = np.ascontiguousarray(rows)
    sums = read_sums(path)
    rb = max(1, rows[0].nbytes)
    done = sums.rows_checked.get("mask")
    if done is None:
        done = sums.rows_checked["mask"] = np.zeros(sums.size // rb, dtype=bool)
    if ids.min() < 0 or ids.max() >= len(done):
        raise Damaged(path, "fewer rows than the store holds")
    # rows checked before, alone or in a block checked whole, need no row hash
    rest = ~(done[ids] | sums.checked[ids // max(1, int(sums.offsets[1]) // rb)])
    if not rest.all():
        if not rest.any():
            return
        ids, rows = ids[rest], rows[rest]
    hpath = os.path.join(os.path.dirname(os.fspath(path)), ROW_HASHES)
    stored = _row_hash_map(hpath)
    if ids.max() >= len(stored):
        raise Damaged(hpath, "fewer row hashes than rows")
    bad = np.flatnonzero(row_hashes(rows) != stored[ids])
    if bad.size:
        verify_file(hpath, force=True)  # a damaged hash file names itself
        raise Damaged(path, f"row {int(ids[bad[0]])} does not match its checksum")
    done[ids] = True


def _row_hash_map(path: str) -> np.ndarray:
    sums = read_sums(path)
    try:
        return _row_hash_memmap(str(path), *sums.ident)
    except (OSError, ValueError) as exc:
        raise Damaged(path, f"unreadable: {exc}") from exc


@lru_cache(maxsize=16)
def _row_hash_memmap(path: str, size: int, _mtime: int, _ino: int) -> np.ndarray:
    if size == 0:
        return np.empty(0, "<u8")
    return np.memmap(path, dtype="<u8", mode="r", shape=(size // 8,))


# ---------------------------------------------------------------- whole folders


def check_tree(root: str | Path, required: tuple[str, ...] = ()) -> tuple[int, int,
                                                                         list[Damaged]]:
    """Check every file under ``root`` against its checksums: (files, bytes, problems). A
    file without checksums, checksums without their file and a missing ``required`` file
    (relative path) are problems too."""
    root = Path(root)
    files = nbytes = 0
    problems: list[Damaged] = []
    for name in required:
        if not (root / name).is_file():
            problems.append(Damaged(root / name, "missing"))
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == SUFFIX:
            if not p.with_name(p.name[:-len(SUFFIX)]).exists():
                problems.append(Damaged(p.with_name(p.name[:-len(SUFFIX)]), "missing"))
            continue
        try:
            sums = verify_file(p, force=True)
            files += 1
            nbytes += sums.size
        except Damaged as exc:
            problems.append(exc)
        except OSError as exc:
            problems.append(Damaged(p, f"unreadable: {exc.strerror or exc}"))
    return files, nbytes, problems


def verify_index(path: str | Path) -> dict:
    """Check every file of an index directory (manifest, codes, vector store) against its
    checksums; Damaged names the first damaged or missing file."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise DataError(f"no index at {path} (no manifest.json); build one with "
                        "'mtquery index build DATASET'")
    required = INDEX_FILES + (("store/vectors.f16",) if (path / "store" / "vectors.f16")
                              .is_file() else ("store/vectors.f32",))
    files, nbytes = verify_tree(path, required)
    return {"path": str(path), "files": files, "bytes": nbytes, "status": "ok"}


def verify_tree(root: str | Path, required: tuple[str, ...] = ()) -> tuple[int, int]:
    """``check_tree`` that raises the first problem; returns (files, bytes) checked."""
    files, nbytes, problems = check_tree(root, required)
    if problems:
        raise problems[0]
    return files, nbytes
