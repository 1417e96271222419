"""Checking the files mtquery writes and later trusts (vector stores, ``rows.arrow``,
``invalid.npy``, codes, manifests) against their XXH3 checksums (``mtquery.vectors.checksums``:
the format and the writers), so that damage on disk is found before a wrong answer leaves
the program.

Each block is checked once per process and version of the file (its inode, mtime and size: a
rewritten file starts unchecked): a whole scan hashes each block just before it is scored; a
set of rows is checked by its row hashes or its blocks, whichever hashes less.

API: ``verify_file``, ``verify_blocks``, ``scan_blocks``, ``check_rows`` / ``verify_rows``,
``read_verified`` (reads); ``check_tree`` / ``verify_tree`` / ``verify_index`` (a whole index
or store); ``disabled`` / ``forget`` (benchmarks). Damage raises ``Damaged``, a DataError whose
one line names the file and what to do. The writers are re-exported from ``checksums``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import xxhash

from mtquery.errors import DataError
from mtquery.vectors import checksums
from mtquery.vectors.checksums import (  # noqa: F401 - the writers, re-exported
    BLOCK_BYTES,
    ROW_HASHES,
    SUFFIX,
    Damaged,
    Hasher,
    Sums,
    VectorSums,
    mapped,
    read_sums,
    remedy_for,
    row_hashes,
    seal,
    sidecar,
    write_sums,
)

#: what checking costs, to pick between row hashes and block hashes for a set of rows
#: (measured on the shared CI box: ~0.2 us a row hash call, ~8 GB/s block hashing)
ROW_CHECK_US = 0.2
HASH_BYTES_PER_US = 8000.0
#: what an index directory must hold (besides store/vectors.f32 or .f16)
INDEX_FILES = ("manifest.json", "ivf.faiss", "store/meta.json", "store/rows.arrow",
               "store/invalid.npy", "store/rowhash.u64")
_h64 = xxhash.xxh3_64_intdigest
_ENABLED = [True]


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


# ---------------------------------------------------------------- reading


#: caches of checked contents to drop with ``forget`` (rows.arrow readers, invalid masks)
FORGET: list = []


def forget() -> None:
    """Forget which blocks this process has checked (benchmarks: a first read each time)."""
    checksums.clear_cache()
    for clear in FORGET:
        clear()


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
    sums = read_sums(path, fresh=force)
    if force or (_ENABLED[0] and not sums.all_checked):
        if force:
            sums.checked[:] = False  # every block, now
        with mapped(Path(path)) as buf:
            scan_parallel(sums, buf, _nothing, check=True)
    return sums


def _nothing(a: int, z: int) -> None:
    return None


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


#: threads of a first (checking) scan: XXH3 and numpy's dot both release the GIL, so blocks
#: are hashed and scored on several cores (4 threads beat one 1.4-1.5x on a 2-core box)
SCAN_THREADS = min(8, max(4, os.cpu_count() or 1))
_POOL: list[ThreadPoolExecutor] = []


def scan_parallel(sums: Sums, buf: memoryview, work: Callable[[int, int], None],
                  check: bool | None = None) -> None:
    """Every block of ``buf`` checked (unless checked before) and handed to ``work(a, z)``
    (its byte range) right after, on SCAN_THREADS threads, each a contiguous run of blocks;
    the first damaged block raises Damaged."""
    nb = sums.blocks
    off, hashes, checked = sums.offsets, sums.hashes, sums.checked
    check = _ENABLED[0] if check is None else check

    def part(b0: int, b1: int) -> None:
        for b in range(b0, b1):
            a, z = int(off[b]), int(off[b + 1])
            if check and not checked[b]:
                if _h64(buf[a:z]) != hashes[b]:
                    raise _mismatch(sums, b)
                checked[b] = True
            work(a, z)

    t = min(SCAN_THREADS, nb)
    if t <= 1:
        part(0, nb)
        return
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="mtquery-scan"))
    cuts = [nb * i // t for i in range(t + 1)]
    futures = [_POOL[0].submit(part, cuts[i], cuts[i + 1]) for i in range(t)]
    for f in futures:
        f.result()


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
    stored = sums.rows_checked.get("hashes")
    if stored is None:  # the row hashes of this version of the vector file (a store is
        stored = sums.rows_checked["hashes"] = _row_hash_map(hpath)  # rebuilt as a whole)
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
    # a plain view of the map: indexing a np.memmap costs ~50 us a query in its subclass hooks
    return np.asarray(np.memmap(path, dtype="<u8", mode="r", shape=(size // 8,)))


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
