#!/usr/bin/env python
"""ANN benchmark on two kinds of data, the same rows for every engine (issue "index that keeps
its recall on any data").

Distributions (mtquery.synth): ``lowrank`` (clustered vectors in a low-rank latent space, the
data mtquery 0.1 was tuned on) and ``isotropic`` (64 unit centres + isotropic within-cluster
noise: neighbours differ from the rest by small margins, the hard case). Sizes: 1M x 768 and
200k x 1152 by default. k = 10, one query at a time on 1 thread (BLAS and faiss), queries are
random rows of the data. For each engine: build seconds, resident and disk bytes, recall@10
against the exact answer, p50 / p99 latency and the ratio to the exact scan measured in the
same run:

- exact: numpy ``X @ q`` + top-k over the memory-mapped float32 store (mtquery's exact scan);
- mtquery ivf-rabitq (the default: RaBitQ 2-bit codes, calibrated nprobe and rerank depth);
- mtquery ivf-sq8 (mtquery 0.1's PCA + SQ8 + rerank 256);
- faiss HNSW32 (efConstruction 40) over all rows, efSearch 64 / 128 / 256, when its build is
  projected to fit --hnsw-limit seconds (else the table says it was skipped).

    python benchmarks/ann_bench.py [--sizes 1000000x768,200000x1152] [--queries 200]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # latency on 1 thread; builds set faiss threads themselves
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K = 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def measure(search, queries: np.ndarray, truth: list[set]) -> dict:
    found, lat = [], []
    search(queries[0])  # warm
    for q in queries:
        t0 = time.perf_counter()
        ids = search(q)
        lat.append(time.perf_counter() - t0)
        found.append(set(np.asarray(ids)[:K].tolist()))
    rec = float(np.mean([len(f & t) / K for f, t in zip(found, truth)]))
    ms = np.asarray(lat) * 1e3
    return {"recall": rec, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99))}


def dataset(workdir: Path, dist: str, rows: int, dim: int) -> Path:
    from mtquery.synth import SynthSpec, write

    path = workdir / f"{dist}-{rows}x{dim}" / "data.parquet"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = SynthSpec(rows=rows, dim=dim, seed=3, distribution=dist,
                         **({"types": 64} if dist == "isotropic" else {}))
        t0 = time.perf_counter()
        write(path, spec)
        log(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    return path


def build(path: Path, kind: str, threads: int):
    from mtquery.vectors.build import BuildParams, build_index
    from mtquery.vectors.index import load_index

    out = path.parent / f"index-{kind}"
    t0 = time.perf_counter()
    build_index(str(path), out, BuildParams(kind=kind, threads=threads))
    secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx = load_index(out)
    opened = time.perf_counter() - t0
    store_bytes = dir_bytes(out / "store")
    return idx, {"build_s": secs, "open_s": opened, "resident": idx.manifest["resident_bytes"],
                 "disk": dir_bytes(out) - store_bytes, "store": store_bytes}


def hnsw_row(x: np.ndarray, queries, truth, threads: int, limit: float) -> list[dict]:
    import faiss

    faiss.omp_set_num_threads(threads)
    n = len(x)
    probe = min(n, 100_000)
    t0 = time.perf_counter()
    small = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    small.hnsw.efConstruction = 40
    small.add(np.ascontiguousarray(x[:probe]))
    # graph build grows ~ n log n, and slower as the graph outgrows the caches (x1.5,
    # measured: 1M x 768 ran past 12 min where a 50k probe x 1.3 promised under 10)
    projected = ((time.perf_counter() - t0) * (n / probe) * np.log(n) / np.log(probe)
                 * (1.5 if n > probe else 1.0))
    if projected > limit:
        return [{"engine": "faiss HNSW32", "note": f"skipped: build projected at "
                 f"{projected:.0f} s > {limit:.0f} s"}]
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    for lo in range(0, n, 100_000):
        index.add(np.ascontiguousarray(x[lo:lo + 100_000]))
    secs = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in (64, 128, 256):
        index.hnsw.efSearch = ef
        m = measure(lambda q: index.search(q[None, :], K)[1][0], queries, truth)
        rows.append({"engine": f"faiss HNSW32 efS {ef}", "build_s": secs,
                     "resident": n * (x.shape[1] * 4 + 32 * 2 * 4), "disk": None, **m})
    return rows


def run_config(workdir: Path, dist: str, rows: int, dim: int, n_q: int, threads: int,
               hnsw_limit: float, skip: set) -> list[dict]:
    from mtquery.vectors.store import unit_query

    path = dataset(workdir, dist, rows, dim)
    log(f"{dist} {rows}x{dim}: building mtquery ivf-rabitq")
    rabitq, rb = build(path, "ivf-rabitq", threads)
    store = rabitq.store
    x = store.matrix()
    rng = np.random.default_rng(7)
    qids = rng.choice(rows, n_q, replace=False)
    queries = np.asarray(x[qids], dtype=np.float32)
    log("exact answers")
    from mtquery.vectors.calibrate import exact_neighbours

    truth = [set(r) for r in exact_neighbours(x, queries, K).tolist()]
    out = []
    ex = measure(lambda q: store.search(unit_query(q, dim), K)[0], queries[:50], truth[:50])
    out.append({"engine": "exact scan (mmap f32)", "build_s": None,
                "resident": None, "disk": store.n * dim * 4, **ex})
    m = measure(lambda q: rabitq.search(q, K)[0], queries, truth)
    cal = rabitq.manifest["calibration"]
    out.append({"engine": f"mtquery ivf-rabitq (nprobe {cal['nprobe']}, rerank "
                f"{cal['rerank']}{', FALLBACK' if cal.get('fallback') else ''})", **rb, **m})
    if "sq8" not in skip:
        log("building mtquery ivf-sq8 (0.1)")
        sq8, sb = build(path, "ivf-sq8", threads)
        m = measure(lambda q: sq8.search(q, K)[0], queries, truth)
        out.append({"engine": f"mtquery ivf-sq8 (0.1; nprobe {sq8.manifest['nprobe']})",
                    **sb, **m})
    if "hnsw" not in skip:
        log("faiss HNSW32")
        out += hnsw_row(np.asarray(x), queries, truth, threads, hnsw_limit)
    for r in out:
        r["vs_exact"] = (r["p50"] / ex["p50"]) if r.get("p50") else None
    return out


def fmt_bytes(b) -> str:
    return "-" if b is None else f"{b / 2**20:,.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000x768,200000x1152")
    ap.add_argument("--dists", default="lowrank,isotropic")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--hnsw-limit", type=float, default=600.0)
    ap.add_argument("--skip", default="", help="comma list: sq8,hnsw")
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks" / ".cache" / "ann"))
    a = ap.parse_args()
    workdir = Path(a.workdir)
    skip = set(filter(None, a.skip.split(",")))
    results = []
    for size in a.sizes.split(","):
        rows, dim = (int(v) for v in size.lower().split("x"))
        for dist in a.dists.split(","):
            results.append((dist, rows, dim, run_config(workdir, dist, rows, dim, a.queries,
                                                        a.threads, a.hnsw_limit, skip)))
    print(f"\nANN benchmark, {dt.date.today()}, {os.cpu_count()} cores (builds on "
          f"{a.threads} threads, queries on 1), k = {K}, {a.queries} queries\n")
    head = (f"{'data':22s} {'engine':52s} {'recall@10':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
            f"{'vs exact':>8s} {'build s':>8s} {'open s':>7s} {'resident':>10s} {'disk':>9s}")
    print(head)
    print("-" * len(head))
    for dist, rows, dim, out in results:
        for r in out:
            if "note" in r:
                print(f"{dist + f' {rows // 1000}k x {dim}':22s} {r['engine']:52s} {r['note']}")
                continue
            vs = f"{r['vs_exact']:.3f}x" if r.get("vs_exact") else "-"
            bs = f"{r['build_s']:.0f}" if r.get("build_s") else "-"
            os_ = f"{r['open_s']:.2f}" if r.get("open_s") is not None else "-"
            print(f"{dist + f' {rows // 1000}k x {dim}':22s} {r['engine']:52s} "
                  f"{r['recall']:9.3f} {r['p50']:8.2f} {r['p99']:8.2f} {vs:>8s} {bs:>8s} "
                  f"{os_:>7s} "
                  f"{fmt_bytes(r.get('resident')):>10s} {fmt_bytes(r.get('disk')):>9s}")
    print("\nresident: what a query keeps in RAM (codes + centroids; HNSW: vectors + graph); "
          "disk: index files besides the vector store; the exact scan's disk is the store.")


if __name__ == "__main__":
    main()
