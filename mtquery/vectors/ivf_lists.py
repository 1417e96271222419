"""The inverted lists of the ANN index at release scale.

- **Two-level coarse centroids** (:func:`train_coarse`): k-means into ``k1 ~ sqrt(nlist)`` top
  centroids on a bounded sample, then each top group into ``nlist / k1`` children. Its cost
  is ~sqrt(nlist) times below a flat k-means of ``nlist`` centroids on the same sample.
- **Two-level assignment** (:func:`assign`): each row goes to the nearest child of its
  ``TOP_PROBE`` nearest top centroids: ``k1 + TOP_PROBE * k2`` dot products a row instead of
  ``nlist`` (96 instead of 2048 at 4M rows), matrix products per top group.
- **Codes** (:func:`encode`): faiss ``IndexIVFRaBitQ.encode_vectors`` on a batch with its
  precomputed lists (faiss parallelises over the rows).
- **Assembly** (:func:`add_codes`, :func:`remove_rows`, :func:`remap_ids`): the encoded chunks
  are appended to the lists directly, so a build can keep each chunk on disk (resume) and an
  update can add, drop and renumber rows without re-encoding anything.

The search side stays faiss' own: the quantiser is a flat index over all ``nlist`` children,
so a query ranks every list exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: top groups whose children each row is compared with (1 = greedy: 99.999 % of the rows
#: land where the best of 3 groups puts them, 200k x 768 isotropic)
TOP_PROBE = 1


@dataclass(frozen=True)
class Coarse:
    """Top centroids (k1, d) and their children (k1 * k2, d); list ``j * k2 + i`` is the
    i-th child of top centroid j."""

    top: np.ndarray
    fine: np.ndarray

    @property
    def k2(self) -> int:
        return len(self.fine) // len(self.top)

    @property
    def nlist(self) -> int:
        return len(self.fine)

    def save(self, path) -> None:
        np.savez(path, top=self.top, fine=self.fine)

    @classmethod
    def load(cls, path) -> Coarse:
        with np.load(path) as z:
            return cls(np.ascontiguousarray(z["top"]), np.ascontiguousarray(z["fine"]))


def _kmeans(faiss, x: np.ndarray, k: int, seed: int, niter: int) -> np.ndarray:
    if len(x) <= k:  # as many centroids as points (and copies of the first to fill)
        reps = np.resize(np.arange(max(1, len(x))), k)
        return np.ascontiguousarray(x[reps] if len(x) else np.zeros((k, x.shape[1])),
                                    dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 30)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def top_count(nlist: int) -> int:
    """k1: a power of two near sqrt(nlist) that divides it."""
    k1 = 2 ** round(math.log2(max(1.0, math.sqrt(nlist))))
    while nlist % k1:
        k1 //= 2
    return max(1, k1)


def train_coarse(sample: np.ndarray, nlist: int, seed: int = 0, niter: int = 10) -> Coarse:
    """Two-level k-means of ``nlist`` lists on ``sample`` (unit float32 rows)."""
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k1 = top_count(nlist)
    k2 = nlist // k1
    top = _kmeans(faiss, sample, k1, seed, niter)
    if k2 == 1:
        return Coarse(top, top.copy())
    owner = _nearest(sample, top)
    fine = [_kmeans(faiss, sample[owner == g], k2, seed + 1 + g, niter) for g in range(k1)]
    return Coarse(top, np.ascontiguousarray(np.concatenate(fine)))


def _nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.argmax(x @ c.T - 0.5 * np.einsum("ij,ij->i", c, c), axis=1)


def assign(coarse: Coarse, x: np.ndarray, probe: int = TOP_PROBE) -> np.ndarray:
    """List of each row (int64): the nearest (L2) child of its ``probe`` nearest tops. The
    rows are gathered once, grouped by top centroid, so each group is one matrix product."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, k1, k2 = len(x), len(coarse.top), coarse.k2
    if k2 == 1 or n == 0:
        return _nearest(x, coarse.fine).astype(np.int64)
    st = x @ coarse.top.T - 0.5 * np.einsum("ij,ij->i", coarse.top, coarse.top)
    probe = min(probe, k1)
    groups = (np.argmax(st, axis=1)[:, None] if probe == 1 else
              np.argpartition(-st, probe - 1, axis=1)[:, :probe])
    fhalf = 0.5 * np.einsum("ij,ij->i", coarse.fine, coarse.fine)
    flat = groups.reshape(-1)
    order = np.argsort(flat, kind="stable")
    rows_of = order // probe
    xs = x[rows_of]  # one gather: the rows of each group contiguous
    bounds = np.searchsorted(flat[order], np.arange(k1 + 1))
    cand = np.empty(len(flat), np.int64)
    score = np.empty(len(flat), np.float32)
    for g in range(k1):
        lo, hi = bounds[g], bounds[g + 1]
        if lo == hi:
            continue
        s = xs[lo:hi] @ coarse.fine[g * k2:(g + 1) * k2].T - fhalf[g * k2:(g + 1) * k2]
        j = np.argmax(s, axis=1)
        cand[lo:hi] = g * k2 + j
        score[lo:hi] = s[np.arange(hi - lo), j]
    if probe == 1:
        best = np.empty(n, np.int64)
        best[rows_of] = cand
        return best
    best = np.zeros(n, np.int64)
    best_s = np.full(n, -np.inf, np.float32)
    for p in range(probe):  # order is stable: the p-th entry of each row in turn
        sel = np.flatnonzero(order % probe == p)
        r = rows_of[sel]
        better = score[sel] > best_s[r]
        best[r[better]] = cand[sel][better]
        best_s[r[better]] = score[sel][better]
    return best


def new_ivf(coarse: Coarse, bits: int, qb: int = 8):
    """An empty IndexIVFRaBitQ (L2 on unit vectors) whose lists are ``coarse``'s children."""
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    d = coarse.fine.shape[1]
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(coarse.fine)
    ivf = faiss.IndexIVFRaBitQ(quantizer, d, coarse.nlist, faiss.METRIC_L2, True, int(bits))
    ivf.qb = int(qb)
    # the quantiser holds nlist trained centroids: train() keeps them and only marks the
    # RaBitQ codec trained (it has no data-dependent state)
    ivf.train(np.ascontiguousarray(coarse.fine[: min(len(coarse.fine), 256)]))
    quantizer.this.disown()  # the index owns (and frees) its quantiser
    ivf.own_fields = True
    return ivf


def encode(ivf, x: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """(n, code_size) uint8 RaBitQ codes of unit rows ``x`` in their ``lists``."""
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    x = np.ascontiguousarray(x, dtype=np.float32)
    lists = np.ascontiguousarray(lists, dtype=np.int64)
    codes = np.empty((len(x), ivf.code_size), dtype=np.uint8)
    if len(x):
        ivf.encode_vectors(len(x), faiss.swig_ptr(x), faiss.swig_ptr(lists),
                           faiss.swig_ptr(codes), False)
    return codes


def add_codes(ivf, lists: np.ndarray, ids: np.ndarray, codes: np.ndarray) -> None:
    """Append encoded rows to their lists (grouped by list: one call per list)."""
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    if len(lists) == 0:
        return
    order = np.argsort(lists, kind="stable")
    lists, ids, codes = lists[order], np.ascontiguousarray(ids[order], np.int64), \
        np.ascontiguousarray(codes[order])
    bounds = np.flatnonzero(np.diff(lists)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(lists)]])
    inv = ivf.invlists
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        inv.add_entries(int(lists[s]), e - s, faiss.swig_ptr(ids[s:e]),
                        faiss.swig_ptr(codes[s:e]))
    ivf.ntotal = ivf.ntotal + len(lists)


def list_sizes(ivf) -> np.ndarray:
    inv = ivf.invlists
    return np.array([inv.list_size(i) for i in range(ivf.nlist)], dtype=np.int64)


def imbalance(sizes: np.ndarray) -> float:
    """faiss' imbalance factor: expected rows scanned per probed list over the mean list
    size (1.0 = equal lists)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    n = sizes.sum()
    return float(len(sizes) * (sizes ** 2).sum() / (n * n)) if n else 1.0


def remove_rows(ivf, lo: int, hi: int) -> int:
    """Remove rows with ids in [lo, hi) from the lists; returns how many."""
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    return int(ivf.remove_ids(faiss.IDSelectorRange(int(lo), int(hi))))


def remap_ids(ivf, mapping: np.ndarray) -> None:
    """Renumber every row id in the lists in place: ``id -> mapping[id]``."""
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    inv = ivf.invlists
    for i in range(ivf.nlist):
        size = inv.list_size(i)
        if size:
            ids = faiss.rev_swig_ptr(inv.get_ids(i), size)
            ids[:] = mapping[ids]
