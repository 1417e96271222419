"""Retrieval evaluation: seeded queries drawn from the labelled fragments, exact cosine search
over all the others (batched float32 matmul), same-label relevance (multi-label: at least one
shared label). Optionally the same queries through an ANN index: recall@k of ANN against the
exact top-k, and per-query latency of both, side by side."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mtquery.errors import DataError, UsageError
from mtquery.eval import metrics
from mtquery.eval.dataset import LabelledSet, sha256_lines
from mtquery.vectors.store import top_k_rows, unit_rows


def parse_ks(text: str | list[int]) -> list[int]:
    if isinstance(text, list):
        ks = text
    else:
        try:
            ks = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError as exc:
            raise UsageError(f"ks must be comma-separated integers, got {text!r}",
                             "ks") from exc
    if not ks or any(k < 1 for k in ks):
        raise UsageError(f"ks must be positive integers, got {text!r}", "ks")
    return sorted(set(ks))


def exact_search(X: np.ndarray, q_idx: np.ndarray, K: int, exclude: np.ndarray | None = None,
                 batch: int = 256) -> tuple[np.ndarray, float]:
    """Top-K cosine neighbours of rows ``q_idx`` among all rows but the query itself (and rows
    sharing its ``exclude`` key, when given),
    ranked by ``mtquery.vectors.store.top_k_rows``: ties go
    to the lower row index. Returns (indices (q, K), seconds)."""
    Xn = unit_rows(X)
    out = np.empty((len(q_idx), K), dtype=np.int64)
    t0 = time.perf_counter()
    for s in range(0, len(q_idx), batch):
        qi = q_idx[s:s + batch]
        S = Xn[qi] @ Xn.T
        S[np.arange(len(qi)), qi] = -np.inf
        if exclude is not None:
            for r, q in enumerate(qi):
                S[r, exclude == exclude[q]] = -np.inf
        out[s:s + batch] = top_k_rows(S, K)[0]
    return out, time.perf_counter() - t0


def relevance(ds: LabelledSet, q_idx: np.ndarray, found: np.ndarray,
              exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """0/1 relevance of the ranked results and the number of relevant database items."""
    n_rel = np.empty(len(q_idx), dtype=np.int64)
    if ds.multi_label:
        Y = ds.y_multi().astype(np.float32)
        rel = (np.einsum("qc,qkc->qk", Y[q_idx], Y[found]) > 0).astype(np.int8)
    else:
        y = ds.y_single()
        rel = (y[found] == y[q_idx][:, None]).astype(np.int8)
        if exclude is None:
            n_rel[:] = np.bincount(y, minlength=len(ds.classes))[y[q_idx]] - 1
            return rel, n_rel
    for s in range(0, len(q_idx), 256):
        qi = q_idx[s:s + 256]
        if ds.multi_label:
            shared = (Y[qi] @ Y.T) > 0
        else:
            shared = y[qi][:, None] == y[None, :]
        shared[np.arange(len(qi)), qi] = False
        if exclude is not None:
            shared &= exclude[None, :] != exclude[qi][:, None]
        n_rel[s:s + 256] = shared.sum(axis=1)
    return rel, n_rel


def pick_queries(n: int, n_queries: int, seed: int) -> np.ndarray:
    if n_queries < 1:
        raise UsageError(f"n_queries must be at least 1, got {n_queries}", "n_queries")
    rng = np.random.default_rng(seed)
    if n_queries >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=n_queries, replace=False))


def _recall_and_latency(info: dict, ann: np.ndarray, exact: np.ndarray, ks: list[int],
                        lat: np.ndarray) -> dict:
    """Add recall@k of the ANN rows against the exact rows, and latency, to ``info``."""
    for k in ks:
        hits = [len(set(ann[r, :k].tolist()) & set(exact[r, :k].tolist())) / k
                for r in range(len(ann))]
        info[f"recall@{k}_vs_exact"] = float(np.mean(hits))
    info["latency_ms_p50"] = float(np.median(lat) * 1e3)
    info["latency_ms_mean"] = float(lat.mean() * 1e3)
    return info


def _index_rows(ds: LabelledSet, idx) -> np.ndarray:
    """Global row ids, in an mtquery index, of the evaluated set's rows."""
    if ds.source_file is None or ds.source_row is None:
        raise DataError("the evaluated rows do not say where they live; cannot use the index")
    return idx.store.rowmap.global_rows(ds.source_file, ds.source_row)


def mtquery_index_compare(ds: LabelledSet, q_idx: np.ndarray, exact: np.ndarray,
                          ks: list[int], idx) -> dict:
    """Recall@k of the dataset's mtquery ANN index (``mtquery index build``) against the exact
    top-k, searched among the evaluated rows only, and its latency per single query."""
    from mtquery.vectors.index import search_index

    grows = _index_rows(ds, idx)
    order = np.argsort(grows)
    sorted_rows = grows[order]
    K = max(ks) + 1
    info: dict = {"index": "mtquery " + str(getattr(idx, "path", "index")), "build_s": 0.0}
    Xn = unit_rows(ds.X)
    lat = np.empty(len(q_idx))
    ann = np.full((len(q_idx), K - 1), -1, dtype=np.int64)
    for r, q in enumerate(q_idx):
        t = time.perf_counter()
        ids, _ = search_index(idx, Xn[q], K, candidates=sorted_rows)
        lat[r] = time.perf_counter() - t
        pos = order[np.searchsorted(sorted_rows, ids)]
        row = [int(j) for j in pos if j != q][:K - 1]
        ann[r, :len(row)] = row
    return _recall_and_latency(info, ann, exact, ks, lat)


def ann_compare(X: np.ndarray, q_idx: np.ndarray, exact: np.ndarray, ks: list[int],
                index: str, ef_search: int = 64) -> dict:
    """Recall@k of an ANN index against the exact top-k, and latency per query (single
    queries). ``index`` is 'hnsw' (faiss HNSW M32 efC40 built here over the same vectors) or
    a path to a faiss index file whose ids are the row numbers of the evaluated set."""
    try:
        import faiss
    except ImportError as exc:
        raise UsageError(f"ann={index!r} needs faiss (pip install 'mtquery[index]')",
                         "ann") from exc
    Xn = unit_rows(X)
    K = max(ks) + 1
    info: dict = {}
    t0 = time.perf_counter()
    if index == "hnsw":
        idx = faiss.IndexHNSWFlat(Xn.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = 40
        idx.add(Xn)
        idx.hnsw.efSearch = ef_search
        info.update({"index": "faiss HNSW M32 efC40", "ef_search": ef_search})
    else:
        p = Path(index)
        if not p.is_file():
            raise DataError(f"ANN index file not found: {index}", "ann")
        idx = faiss.read_index(str(p))
        if idx.ntotal != len(Xn) or idx.d != Xn.shape[1]:
            raise DataError(f"ANN index {index} holds {idx.ntotal} x {idx.d} vectors; the "
                            f"evaluated set is {len(Xn)} x {Xn.shape[1]}")
        info.update({"index": str(p), "index_type": type(idx).__name__})
    info["build_s"] = time.perf_counter() - t0
    Q = Xn[q_idx]
    lat = np.empty(len(q_idx))
    found = np.empty((len(q_idx), K), dtype=np.int64)
    for i in range(len(q_idx)):
        t = time.perf_counter()
        _, ids = idx.search(Q[i:i + 1], K)
        lat[i] = time.perf_counter() - t
        found[i] = ids[0]
    # drop the query itself, keep K-1
    ann = np.empty((len(q_idx), K - 1), dtype=np.int64)
    for r, q in enumerate(q_idx):
        row = [j for j in found[r] if j != q and j >= 0][:K - 1]
        row += [-1] * (K - 1 - len(row))
        ann[r] = row
    return _recall_and_latency(info, ann, exact, ks, lat)


def run_retrieval(ds: LabelledSet, *, ks: list[int], n_queries: int, seed: int,
                  exclude_same_cell: bool = False, ann: str | None = None,
                  ann_index=None) -> dict:
    if len(ds.classes) < 2:
        raise DataError(f"the labels hold a single class ({ds.classes[0]!r}); retrieval "
                        "needs at least 2 classes to be informative")
    K = max(ks)
    if len(ds) < K + 1:
        raise DataError(f"{len(ds)} labelled fragments; k = {K} needs at least {K + 1}", "ks")
    exclude = ds.grid_cell.astype(str) if exclude_same_cell else None
    q_idx = pick_queries(len(ds), n_queries, seed)
    timings: dict = {}
    found, t_search = exact_search(ds.X, q_idx, K, exclude)
    timings["exact_search_s"] = t_search
    t0 = time.perf_counter()
    rel, n_rel = relevance(ds, q_idx, found, exclude)
    res = metrics.retrieval(rel, n_rel, ks)
    timings["metrics_s"] = time.perf_counter() - t0
    out: dict = {"n_queries": int(len(q_idx)), "database_size": int(len(ds) - 1),
                 "queries_sha256": sha256_lines(ds.unique_id[q_idx].tolist()),
                 "exclude_same_cell": bool(exclude_same_cell), "metrics": res,
                 "exact_latency_ms_per_query_batched": t_search / max(len(q_idx), 1) * 1e3}
    # per-class breakdown of AP@K (single-label) for the report's per-class plot
    if not ds.multi_label:
        y = ds.y_single()[q_idx]
        keep = n_rel > 0
        per = {}
        for ci, c in enumerate(ds.classes):
            m = (y == ci) & keep
            if m.any():
                per[c] = metrics.retrieval(rel[m], n_rel[m], [K])[f"map@{K}"]
        out["per_class_map"] = per
    if ann:
        if exclude is not None:
            raise UsageError("ann cannot be combined with exclude_same_cell", "ann")
        t0 = time.perf_counter()
        out["ann"] = (mtquery_index_compare(ds, q_idx, found, ks, ann_index)
                      if ann_index is not None else ann_compare(ds.X, q_idx, found, ks, ann))
        timings["ann_s"] = time.perf_counter() - t0
    out["_timings"] = timings
    return out
