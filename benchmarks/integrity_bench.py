#!/usr/bin/env python
"""What the integrity checks (mtquery.vectors.integrity, issue 19) cost a query.

For two kinds of data (the clustered low-rank model and isotropic clusters, mtquery.synth),
builds the index of an N x DIM dataset, then times in the same run, alternating query by
query so the shared machine's load hits all alike: checks off (the baseline: the code path
without checks, ``integrity.disabled()``), checks on as a one-shot command meets them (the
first read of the files in the process: ``integrity.forget()`` before each query), and
checks on in a long-running process (the server, the Python API: blocks checked once per
process and version of the file):

- ``exact scan``: the exact top-10 over the whole vector store (every block hashed just before
  it is scored);
- ``exact, bbox``: the same over the rows of a bbox filter (gathered rows checked row by row
  or block by block, whichever hashes less);
- ``index``: a query through the ANN index (the reranked rows checked against their row
  hashes, the returned rows' metadata batches checked);
- ``open index``: ``load_index`` (manifest and codes checked whole, once per process).

Prints medians and the ratios on/off (target <= 1.05 for the queries).

    .venv/bin/python benchmarks/integrity_bench.py [--rows 200000] [--dim 256] [--queries 30]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _abc(fns, repeat: int) -> list[float]:
    """Median seconds of each function, called in turn (rotated each round)."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()  # warm: page cache, memory maps, imports
    for i in range(repeat):
        for j in [(i + k) % len(fns) for k in range(len(fns))]:
            t = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def run_kind(kind: str, rows: int, dim: int, queries: int, work: Path) -> list[tuple]:
    from mtquery.query.filters import Filters
    from mtquery.query.session import open_session
    from mtquery.query.vector import QueryVector
    from mtquery.synth import SynthSpec, write
    from mtquery.vectors import integrity
    from mtquery.vectors.build import BuildParams, build_index
    from mtquery.vectors.exact import store_knn
    from mtquery.vectors.index import index_knn, load_index

    path = write(work / f"{kind}.parquet", SynthSpec(rows=rows, dim=dim, seed=3,
                                                    distribution=kind))
    t0 = time.perf_counter()
    index_dir = build_index(str(path), work / f"{kind}.mtindex", BuildParams())
    build_s = time.perf_counter() - t0
    session = open_session(str(path))
    idx = load_index(index_dir, session.dataset)
    store = idx.store
    rng = np.random.default_rng(0)
    qids = rng.choice(rows, queries, replace=False)
    mat = store.matrix()
    qs = [QueryVector(np.asarray(mat[i], dtype=np.float32)) for i in qids]
    qs = [q for q in qs if np.isfinite(q.vector).all()]
    lat, lon = (float(v) for v in session.con.execute(
        "SELECT median(centre_lat), median(centre_lon) FROM embeddings").fetchone())
    bbox = Filters.of(bbox=(lon - 20, lat - 10, lon + 20, lat + 10))
    it = {"i": 0}

    def nxt() -> QueryVector:
        it["i"] += 1
        return qs[it["i"] % len(qs)]

    def off(fn):
        def wrapped():
            with integrity.disabled():
                fn()
        return wrapped

    def first(fn):
        def wrapped():
            integrity.forget()  # nothing checked yet in this process: a one-shot command
            fn()
        return wrapped

    cases = {
        "exact scan": lambda: store_knn(session, store, nxt(), 10, Filters()),
        "exact, bbox": lambda: store_knn(session, store, nxt(), 10, bbox),
        "index": lambda: index_knn(session, idx, nxt(), 10),
        "open index": lambda: load_index(index_dir),
    }
    out = []
    for name, fn in cases.items():
        t_off, t_first, t_on = _abc([off(fn), first(fn), fn],
                                    queries if name != "open index" else 7)
        out.append((kind, name, f"{t_off * 1e3:.2f}", f"{t_first * 1e3:.2f}",
                    f"{t_first / t_off:.3f}", f"{t_on * 1e3:.2f}", f"{t_on / t_off:.3f}"))
    session.close()
    print(f"  {kind}: {rows:,} x {dim}, index built in {build_s:.1f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--kinds", default="lowrank,isotropic")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mtquery-integrity-"))
    rows: list[tuple] = []
    try:
        for kind in a.kinds.split(","):
            rows += run_kind(kind, a.rows, a.dim, a.queries, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = ("data", "query", "off ms", "first read ms", "first / off", "repeat ms",
            "repeat / off")
    width = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, width)))
    print("  ".join("-" * w for w in width))
    for r in rows:
        print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, width))))
    print(f"medians of {a.queries} alternated queries each ({platform.processor() or 'cpu'}, "
          f"{platform.python_version()}); 'open index' medians of 7 opens")


if __name__ == "__main__":
    main()
