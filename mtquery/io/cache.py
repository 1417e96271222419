"""The exact scan's vector cache: a VectorStore per local dataset under ``$MTQUERY_CACHE``
(default ``~/.cache/mtquery``; ``off`` disables it).

Decoding Parquet float lists runs well under 1 GB/s; a matrix-vector product over a
memory-mapped float32 file runs at memory bandwidth (benchmarks/query_bench.py), so the first
exact query on a local dataset writes a store and later ones scan it.
The cache is an optimisation only:
a read-only, full or impossible cache location, a concurrent builder or any other failure
logs a one-line notice and the scan streams the Parquet files instead. It is keyed by the
files' resolved paths, sizes and mtimes, so a relative and an absolute spelling share it and a
changed file is never served stale. Datasets whose vectors exceed ``MTQUERY_CACHE_MAX_BYTES``
(default 4 GiB) are streamed unless an index holds a store for them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from mtquery.errors import DataError
from mtquery.io.columns import STANDARD, Roles
from mtquery.io.datasets import Dataset
from mtquery.io.roles import roles_of
from mtquery.vectors.integrity import Damaged
from mtquery.vectors.store import VectorStore, fingerprint, load_store, write_store

log = logging.getLogger("mtquery")

ENV_DIR = "MTQUERY_CACHE"
ENV_MAX = "MTQUERY_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 4 << 30


def cache_root() -> Path | None:
    value = os.environ.get(ENV_DIR, "")
    if value.lower() in ("off", "0", "false", "none"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mtquery"


def stat_key(files) -> str:
    """Identity of local files without reading them: resolved paths, sizes, mtimes."""
    parts = []
    for f in files:
        p = Path(f).resolve()
        st = p.stat()
        parts.append([str(p), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def cache_path(dataset: Dataset, roles: Roles | None = None) -> Path | None:
    """Where the dataset's store lives: keyed by its files and, for a dataset of another
    shape, the column roles read (mtquery.io.columns; other roles, another store)."""
    root = cache_root()
    if root is None or dataset.remote or not dataset.local_files:
        return None
    key = stat_key(dataset.local_files)
    roles = roles if roles is not None else roles_of(dataset)
    return root / "vectors" / (key + (f"-{roles.key()}" if not roles.standard else ""))


def cached_store(dataset: Dataset, dim: int, build: bool = True, max_bytes: int | None = None,
                 progress=None) -> VectorStore | None:
    """The dataset's cached store: loaded when current, built when allowed; None when there
    is none (remote data, cache off, too large, or the cache failed: then a notice says why)."""
    roles = roles_of(dataset) if not dataset.remote and dataset.local_files else STANDARD
    try:
        path = cache_path(dataset, roles)
    except OSError:
        return None
    if path is None:
        return None
    try:
        store = load_store(path)
    except Damaged as exc:
        discard_damaged(path, exc)
        store = None
    if store is not None and store.dim == dim:
        return store
    if not build:
        return None
    try:
        fp = fingerprint(dataset.local_files)
        limit = max_bytes if max_bytes is not None else int(os.environ.get(ENV_MAX,
                                                                           DEFAULT_MAX_BYTES))
        if sum(f["rows"] for f in fp) * dim * 4 > limit:
            return None
        return build_at(path, fp, progress=progress, roles=roles)
    except OSError as exc:
        log.warning("vector cache unavailable at %s (%s); scanning the Parquet files instead",
                    path.parent.parent, exc.strerror or exc)
        return None


def build_at(path: Path, fp: list[dict], dtype: str = "float32",
             progress=None, roles: Roles = STANDARD) -> VectorStore:
    """Build a store into ``path`` through a staging folder; a concurrent builder that
    publishes first wins and its store is used."""
    from mtquery.io.staging import discard, new_staging, publish, tidy

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = new_staging(path.parent, path.name)
    try:
        write_store(staging, fp, dtype, progress=progress, roles=roles)
        if path.exists():
            try:
                stale = load_store(path, fp) is None
            except Damaged:
                stale = True
            if stale:
                _replace_stale(path)
        publish(staging, path, on_exists="keep")  # another process's store is as good
    except BaseException:
        discard(staging)
        raise
    tidy(path.parent)
    store = load_store(path, fp)
    if store is None:
        raise DataError(f"the vector store at {path} is incomplete; remove it and run again")
    return store


def discard_damaged(path: Path, exc: Damaged) -> None:
    """A damaged cached store: one notice naming the damaged file, and the store removed (the
    next exact query builds it again)."""
    log.warning("%s is damaged (%s); removed that vector cache (it is built again from the "
                "Parquet files)", exc.path, exc.detail)
    _replace_stale(path)


def _replace_stale(path: Path) -> None:
    """Move an outdated store out of the way (into staging, then removed)."""
    from mtquery.io.staging import discard, new_staging

    old = new_staging(path.parent, path.name + ".old", directory=False)
    try:
        os.rename(path, old)
    except OSError:
        return  # someone else moved or replaced it
    discard(old)
