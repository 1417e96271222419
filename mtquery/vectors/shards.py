"""Sharded search: one index per file (or per group of files), searched independently, and
the per-shard top-k lists merged into the global top-k.

The merge is exact: every shard returns its own best k (rows of that shard only), so the
global best k are among the union, and a merge of the sorted lists by score gives them. Ties
are broken by (shard, row) so the answer does not depend on the order shards answer in. This
is what serves a 56M-row dataset across processes or machines (docs/scale.md): each worker
holds the shards of some files and answers (row ids, scores); a coordinator merges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.io.datasets import Dataset
from mtquery.query.filters import Filters
from mtquery.query.session import Session
from mtquery.query.vector import QueryVector
from mtquery.vectors.store import RowMap, empty_rows, result_table, top_k, unit_query, with_skipped


@dataclass(frozen=True)
class ShardHits:
    """One shard's answer: global row ids and scores (higher is better), best first."""

    shard: int
    ids: np.ndarray
    scores: np.ndarray


def merge_topk(hits: Sequence[ShardHits], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Global top-k (ids, scores), best first, from per-shard lists: the store's top-k over
    their union (ties by global row id, NaN scores dropped)."""
    if k <= 0:
        raise UsageError(f"k must be positive (got {k})", "k")
    for h in hits:
        if np.shape(h.ids) != np.shape(h.scores):
            raise DataError(f"shard {h.shard}: {len(h.ids)} ids but {len(h.scores)} scores")
    if not hits:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    ids = np.concatenate([np.asarray(h.ids, dtype=np.int64) for h in hits])
    scores = np.concatenate([np.asarray(h.scores, dtype=np.float32) for h in hits])
    pos, sc = top_k(scores, k, ids)
    return ids[pos], sc


@dataclass
class Shard:
    """An index over rows [offset, offset + rows) of the global dataset."""

    index: object  # mtquery.vectors.index.AnnIndex
    offset: int

    @property
    def rows(self) -> int:
        return self.index.rows


def open_shards(paths: Sequence[str | Path]) -> list[Shard]:
    """Open per-file indexes in dataset order; global row offsets follow their row counts."""
    from mtquery.vectors.index import load_index

    shards, off = [], 0
    dims = set()
    for p in paths:
        idx = load_index(p)
        dims.add(idx.dim)
        shards.append(Shard(idx, off))
        off += idx.rows
    if len(dims) > 1:
        raise DataError(f"shards hold vectors of different dimensions: {sorted(dims)}")
    return shards


def search_shards(shards: Sequence[Shard], query: np.ndarray, k: int,
                  allowed: np.ndarray | None = None, threads: int = 1,
                  search: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Search every shard for its top k (restricted to ``allowed`` global row ids when
    given), then merge. Shards with no allowed rows are skipped."""

    def one(i: int) -> ShardHits:
        s = shards[i]
        sub = None
        if allowed is not None:
            lo, hi = np.searchsorted(allowed, [s.offset, s.offset + s.rows])
            sub = allowed[lo:hi] - s.offset
            if sub.size == 0:
                return ShardHits(i, np.empty(0, np.int64), np.empty(0, np.float32))
        fn = search or (lambda idx, q, kk, al: idx.search(q, kk, allowed=al))
        ids, sc = fn(s.index, query, k, sub)
        return ShardHits(i, np.asarray(ids, dtype=np.int64) + s.offset, sc)

    if threads > 1 and len(shards) > 1:
        with ThreadPoolExecutor(threads) as ex:
            hits = list(ex.map(one, range(len(shards))))
    else:
        hits = [one(i) for i in range(len(shards))]
    return merge_topk(hits, k)


def shard_path(file: str | Path) -> Path:
    """Where the per-file index of ``file`` lives: ``<file>.mtindex`` beside it."""
    return Path(file).resolve().with_name(Path(file).name + ".mtindex")


def build_per_file(dataset, progress=None, engine: str = "local", address: str | None = None,
                   **params) -> list[Path]:
    """One index per file of a local dataset, each beside its file (``<file>.mtindex``): the
    unit of work of a distributed build, resumable file by file (a finished, fresh shard is
    kept). ``engine="ray"`` builds the shards left to do as Ray tasks (``address``: the
    cluster, default a local Ray; the files must be at the same paths on every node)."""
    from mtquery.io.datasets import resolve
    from mtquery.progress import emit
    from mtquery.vectors.build import BuildParams, build_index
    from mtquery.vectors.index import load_index

    if engine not in ("local", "ray"):
        raise UsageError(f"unknown engine {engine!r}; choose local or ray", "engine")
    BuildParams(**params).check()
    if engine == "ray":  # a malformed address is refused before any work
        from mtquery.generate.ray_cluster import RayOptions

        RayOptions.checked(address, None, None, 30.0)
    ds = resolve(dataset)
    from mtquery.io.roles import roles_of

    if not roles_of(ds).standard:  # per-file ids and roles would not be the dataset's
        raise DataError(f"per-file indexes are built over Major TOM-standard files; "
                        f"{ds.spec} is of another shape: 'mtquery convert' it first, or build "
                        "one index over it (mtquery index build)")
    out, todo = [], []
    for f in ds.local_files:
        one = resolve(str(f))
        path = shard_path(f)
        try:
            load_index(path, one)
            emit(progress, "index", message=f"{path}: fresh, kept")
        except DataError:
            if engine == "ray":
                todo.append(str(f))
            else:
                build_index(one, path, BuildParams(**params), progress=progress)
        out.append(path)
    if todo:
        from mtquery.vectors.shards_ray import build_on_ray

        build_on_ray(todo, params, address, progress)
    return out


@dataclass
class ShardSet:
    """The per-file indexes of a multi-file dataset, addressed by global row ids."""

    shards: list[Shard]

    @property
    def rowmap(self) -> RowMap:
        fp = [f for s in self.shards for f in s.index.store.fingerprint]
        return RowMap.from_fingerprint(fp)

    def rows(self, ids: np.ndarray) -> pa.Table:
        """Result columns of global row ids, in that order, from each shard's store."""
        ids = np.asarray(ids, dtype=np.int64)
        starts = np.array([s.offset for s in self.shards], dtype=np.int64)
        which = np.searchsorted(starts, ids, side="right") - 1
        parts, order = [], []
        for i in np.unique(which):
            sel = np.flatnonzero(which == i)
            s = self.shards[int(i)]
            parts.append(s.index.store.rows(ids[sel] - s.offset))
            order.append(sel)
        if not parts:
            return empty_rows()
        table = pa.concat_tables(parts)
        return table.take(pa.array(np.argsort(np.concatenate(order)), pa.int64()))


def open_for(dataset: Dataset) -> ShardSet | None:
    """The dataset's per-file indexes when every file of a multi-file local dataset has a
    fresh one (``mtquery index build --per-file``), else None."""
    from mtquery.io.datasets import resolve
    from mtquery.vectors.index import MANIFEST, load_index

    files = list(dataset.local_files)
    if dataset.remote or len(files) < 2:
        return None
    paths = [shard_path(f) for f in files]
    if not all((p / MANIFEST).is_file() for p in paths):
        return None
    for f, p in zip(files, paths):
        load_index(p, resolve(str(f)))  # a stale shard is refused with a clear message
    return ShardSet(open_shards(paths))


def shard_knn(session: Session, shardset: ShardSet, query: QueryVector, k: int,
              filters: Filters | None = None, include_self: bool = False) -> pa.Table:
    """kNN over per-file indexes: each shard's top k, merged by the store's top-k."""
    from mtquery.vectors.exact import allowed_ids, excluding

    exclude = () if include_self else query.exclude_ids
    q = unit_query(query.vector, session.dim)
    allowed = allowed_ids(session, shardset, filters or Filters())

    def fetch(m: int) -> tuple[pa.Table, np.ndarray]:
        ids, scores = search_shards(shardset.shards, q, m, allowed)
        return shardset.rows(ids), scores

    rows, scores = excluding(fetch, k, exclude, sum(s.rows for s in shardset.shards))
    skipped = sum(s.index.store.count_invalid() for s in shardset.shards) if allowed is None \
        else 0
    return with_skipped(result_table(scores, rows), skipped)
