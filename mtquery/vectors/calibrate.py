"""Calibration of an ANN index: the cheapest (nprobe, rerank depth) whose recall@10 reaches
the target on queries drawn from the data (rows outside the training sample), and an honest
verdict when none does within the latency budget.

The ground truth is given: the build computes it in its one pass over the rows (the queries
as a matrix against each chunk, :class:`mtquery.vectors.chunks.Truth`); an update or the
``ivf-sq8`` kind gets it from :func:`exact_neighbours`, one batched pass over the store.

For each nprobe (nlist / 256 or 1, then doubling) one batched search gives every query's
candidates, best code estimate first, to the deepest depth tried. The exact rerank of a
prefix keeps every true top-k row in it (each outscores all other rows), so the recall at
every depth is read off the candidates' positions: the whole (nprobe, depth) grid costs one
search per nprobe and no read of the store (at 4M rows, gathering 128 x 1600 rows a level
from a memory-mapped store cost most of a minute on a busy machine).

Among the settings reaching the target plus MARGIN, the one of least estimated work (codes
scanned + RERANK_COST per rescored candidate) wins, deterministically; its single-query
latency is then timed. When it is slower than ``budget`` x the exact scan (timed the same
way), or no setting reaches the target, the manifest says why (``fallback``) and ``knn``
uses the exact scan for that dataset (``--index`` forces the index)."""

from __future__ import annotations

import time

import numpy as np

from mtquery.vectors.store import top_k_rows

K = 10
DEPTHS = (20, 30, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600)
QUERIES = 128
TIMED = 32
EXACT_TIMED = 2
#: the calibration queries are a sample: aim this much above the target so other queries
#: reach it too (128 queries x 10 neighbours: a standard error of ~0.006 at recall 0.95)
MARGIN = 0.015
#: rescoring one candidate (a float vector paged in + a dot product) costs about this many
#: code distances: the deterministic cost model that ranks (nprobe, depth) settings
RERANK_COST = 32
#: probing twice the lists gains less than this at the deepest rerank: stop probing more
PLATEAU = 0.002


def exact_neighbours(vec: np.ndarray, q: np.ndarray, k: int, batch: int = 262_144
                     ) -> np.ndarray:
    """Exact top-k row ids of each unit query over all rows: one pass over ``vec`` with the
    queries as a matrix."""
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for lo in range(0, len(vec), batch):
        x = np.asarray(vec[lo:lo + batch], dtype=np.float32)
        s_all = np.concatenate([best_s, q @ x.T], 1)
        i_all = np.concatenate([best_i, np.broadcast_to(np.arange(lo, lo + len(x)),
                                                        (len(q), len(x)))], 1)
        cols, best_s = top_k_rows(s_all, k)
        best_i = np.take_along_axis(i_all, cols, 1)
    return best_i


def _recall_by_depth(idx, q: np.ndarray, truth: np.ndarray, nprobe: int,
                     depths: list[int]) -> dict[int, float]:
    """Recall at each depth for one nprobe, without reading the store: the exact rerank puts
    every true top-k row that is among the candidates into its top k (each outscores every
    other row), so recall at depth d is the share of the true top-k among the first d
    candidates (ties at the k-th score aside)."""
    from mtquery.vectors.index import faiss_module

    faiss = faiss_module()
    faiss.omp_set_num_threads(2)  # a batch of queries: threads help here
    try:
        cand = idx.candidate_lists(q, max(depths), nprobe)
    finally:
        faiss.omp_set_num_threads(1)
    k = truth.shape[1]
    found = np.full(truth.shape, np.iinfo(np.int64).max, dtype=np.int64)  # candidate rank
    for i in range(len(q)):
        pos = {int(r): j for j, r in enumerate(cand[i].tolist()) if r >= 0}
        found[i] = [pos.get(int(t), found[i, 0]) for t in truth[i]]
    return {d: float((found < d).sum()) / max(1, len(q) * k) for d in depths}


def _median_ms(fn, queries: np.ndarray) -> float:
    fn(queries[0])  # warm the code path
    times = []
    for qv in queries:
        t0 = time.perf_counter()
        fn(qv)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def calibrate(idx, q: np.ndarray, truth: np.ndarray, target: float = 0.95,
              budget: float = 0.5, nprobe: int | None = None, rerank: int | None = None
              ) -> dict:
    """Tune nprobe and the rerank depth of ``idx`` (fixed where given) for unit queries
    ``q`` whose exact top-k row ids are ``truth``; the manifest's ``calibration`` block:
    chosen values, the recall curve, latencies, fallback."""
    n = idx.rows
    q = np.asarray(q, dtype=np.float32)
    k = int(truth.shape[1]) if len(q) else min(K, n)
    depths = [int(rerank)] if rerank else [d for d in DEPTHS if d < n] or [n]
    # from nlist / 256 lists up: fewer never reach the target at scale (1 on small data)
    first = max(1, idx.nlist // 256)
    probes = [int(nprobe)] if nprobe else sorted({min(idx.nlist, first * 2 ** i)
                                                  for i in range(0, 14)})
    curve: dict[str, dict[str, float]] = {}
    reaching: list[tuple[int, int]] = []  # (nprobe, smallest depth reaching the target)
    aim = min(1.0, target + MARGIN)
    prev = None
    per_list = n / max(1, idx.nlist)
    for p in probes:
        rec = _recall_by_depth(idx, q, truth, p, depths) if len(q) else \
            dict.fromkeys(depths, 1.0)
        curve[str(p)] = {str(d): round(r, 4) for d, r in rec.items()}
        ok = [d for d in depths if rec[d] >= aim]
        if ok:
            reaching.append((p, ok[0]))
            if ok[0] == depths[0]:
                break  # deeper probing only costs time
        if prev is not None and rec[depths[-1]] <= prev + PLATEAU:
            break  # the lists probed already hold what the codes can find
        prev = rec[depths[-1]]
        if reaching and 2 * p * per_list >= min(pp * per_list + dd * RERANK_COST
                                                for pp, dd in reaching):
            break  # probing twice the lists alone costs more than the best setting found
    timed = q[:TIMED] if len(q) else np.ones((1, idx.dim), np.float32)
    exact_ms = _median_ms(lambda v: idx.exact(v, k), timed[:EXACT_TIMED])
    result = {"target_recall": target, "k": k, "queries": int(len(q)), "curve": curve,
              "exact_ms": round(exact_ms, 3), "budget_ms": round(budget * exact_ms, 3),
              "latency_budget": budget,
              "truth": "one batched pass"}
    if not reaching:
        best_p = max(probes, key=lambda p: max(curve[str(p)].values()))
        best_d = max(depths, key=lambda d: curve[str(best_p)][str(d)])
        result.update(nprobe=best_p, rerank=best_d, recall=curve[str(best_p)][str(best_d)],
                      latency_ms=None,
                      fallback=f"recall@{k} reaches at most {curve[str(best_p)][str(best_d)]:.3f}"
                               f" < target {target} (nprobe {best_p}, rerank {best_d})")
        return result
    p, d = min(reaching, key=lambda pd: (pd[0] * per_list + pd[1] * RERANK_COST, pd))
    ms = _median_ms(lambda v: idx.search(v, k, nprobe=p, rerank=d), timed)
    result.update(nprobe=p, rerank=d, recall=curve[str(p)][str(d)], latency_ms=round(ms, 3),
                  aimed_at=aim, options=[f"{pp}/{dd}" for pp, dd in reaching])
    if ms > budget * exact_ms:
        result["fallback"] = (f"the index needs {ms:.2f} ms for recall@{k} >= {target}, more "
                              f"than {budget:g} x the exact scan ({exact_ms:.2f} ms)")
    return result
