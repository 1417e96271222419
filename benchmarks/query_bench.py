#!/usr/bin/env python
"""Foundation benchmark: grid points/s, and exact kNN ms/query on 200k x 768 next to a numpy
matrix-vector baseline measured in the same run (the machine is shared: read the ratios).

    .venv/bin/python benchmarks/query_bench.py [--rows 200000] [--dim 768] [--queries 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

import mtquery
from mtquery.query.filters import Filters, parse_bbox
from mtquery.query.search import search
from mtquery.query.vector import QueryVector
from mtquery.standard import grid
from mtquery.standard.schema import embedding_matrix
from mtquery.synth import SynthSpec, write
from mtquery.vectors.exact import exact_knn

CACHE = Path(__file__).resolve().parent / ".cache"


def timeit(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def reference_style_cells(lats: np.ndarray, lons: np.ndarray) -> list[str]:
    """A per-point loop as the reference's latlon2rowcol does it (rows/cols materialised)."""
    import math

    r_km = 6378.137
    n = math.ceil(math.pi * r_km / 10)
    rl = np.sort(np.mod(np.linspace(-90, 90, n + 1)[:-1], 180) - 90)
    z = int(np.searchsorted(rl, 0))
    cache: dict[int, tuple[np.ndarray, int]] = {}
    out = []
    for la, lo in zip(lats, lons):
        r = int(np.searchsorted(rl, la, side="right")) - 1
        if r not in cache:
            m = math.ceil(2 * math.pi * r_km * math.cos(rl[r] * math.pi / 180) / 10)
            cl = np.sort(np.mod(np.linspace(-180, 180, m + 1)[:-1], 360) - 180)
            cache[r] = (cl, int(np.where(cl == 0)[0][0]))
        cl, zc = cache[r]
        c = int(np.searchsorted(cl, lo, side="right")) - 1
        ru, cr = r - z, (c if c >= 0 else len(cl) - 1) - zc
        out.append(f"{abs(ru)}{'U' if ru >= 0 else 'D'}_{abs(cr)}{'R' if cr >= 0 else 'L'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--points", type=int, default=1_000_000)
    a = ap.parse_args()
    rows: list[tuple[str, str, str]] = []

    # --- grid ---------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    lat = rng.uniform(-85, 85, a.points)
    lon = rng.uniform(-180, 180, a.points)
    grid.latlon_to_cell(lat[:1000], lon[:1000])  # build the row table once
    best = min(timeit(lambda: grid.latlon_to_cell(lat, lon), 3))
    n_ref = 20_000
    ref_t = min(timeit(lambda: reference_style_cells(lat[:n_ref], lon[:n_ref]), 1))
    assert reference_style_cells(lat[:2000], lon[:2000]) == grid.latlon_to_cell(
        lat[:2000], lon[:2000]).tolist()
    rows.append(("grid latlon_to_cell (names)", f"{a.points / best / 1e6:.2f} M points/s",
                 f"{(a.points / best) / (n_ref / ref_t):.0f}x per-point loop "
                 f"({n_ref / ref_t / 1e3:.0f} k points/s)"))
    best_rc = min(timeit(lambda: grid.latlon_to_rowcol(lat, lon), 3))
    rows.append(("grid latlon_to_rowcol (ints)", f"{a.points / best_rc / 1e6:.2f} M points/s", ""))

    # --- data ---------------------------------------------------------------------------
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"synth_{a.rows}x{a.dim}.parquet"
    if not path.exists():
        t = time.perf_counter()
        write(path, SynthSpec(rows=a.rows, dim=a.dim, seed=0))
        print(f"wrote {path.name} in {time.perf_counter() - t:.1f} s")
    session = mtquery.open_session(str(path))
    vec_table = session.con.execute("SELECT embedding FROM embeddings").to_arrow_table()
    x = embedding_matrix(vec_table.column("embedding"))
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    queries = [x[i].copy() for i in rng.integers(0, len(x), a.queries)]

    # --- numpy baseline (vectors already in RAM, the physical limit) --------------------
    def numpy_knn(q: np.ndarray) -> np.ndarray:
        s = x @ q
        idx = np.argpartition(-s, 10)[:10]
        return idx[np.argsort(-s[idx])]

    base = statistics.median(t for q in queries for t in timeit(lambda q=q: numpy_knn(q), 3))
    rows.append((f"numpy X@q baseline, {a.rows:,} x {a.dim} in RAM", f"{base * 1e3:.1f} ms/query",
                 "1.0x"))

    # --- mtquery exact kNN -------------------------------------------------------------
    cache_dir = CACHE / "vector-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)  # time a real first build
    os.environ["MTQUERY_CACHE"] = str(cache_dir)
    t0 = time.perf_counter()
    exact_knn(session, QueryVector(vector=queries[0]), 10)  # first query builds the cache
    rows.append(("mtquery first query (builds vector cache)",
                 f"{(time.perf_counter() - t0):.1f} s", "once per dataset version"))

    def mt_knn(q: np.ndarray, use_cache: bool) -> None:
        exact_knn(session, QueryVector(vector=q), 10, use_cache=use_cache)

    mt = statistics.median(t for q in queries for t in timeit(lambda q=q: mt_knn(q, True), 1))
    rows.append(("mtquery exact_knn (memory-mapped cache)", f"{mt * 1e3:.1f} ms/query",
                 f"{mt / base:.2f}x baseline"))
    f1 = Filters(bbox=parse_bbox("-5,40,5,50"))
    mtf = statistics.median(
        t for q in queries
        for t in timeit(lambda q=q: exact_knn(session, QueryVector(vector=q), 10, f1), 1))
    rows.append(("mtquery exact_knn + bbox filter (cache)", f"{mtf * 1e3:.1f} ms/query", ""))
    ms = statistics.median(t for q in queries[:2] for t in timeit(lambda q=q: mt_knn(q, False),
                                                                  1))
    rows.append(("mtquery exact_knn (Parquet, streamed)", f"{ms * 1e3:.1f} ms/query",
                 f"{ms / base:.1f}x baseline"))
    sqlq = ("SELECT unique_id FROM embeddings ORDER BY array_cosine_distance(embedding, "
            "getvariable('q')) LIMIT 10")

    def duck_sql(q: np.ndarray) -> None:
        session.con.execute(f"SET VARIABLE q = {_array_literal(q)}")
        session.con.execute(sqlq).fetchall()

    dk = statistics.median(t for q in queries[:2] for t in timeit(lambda q=q: duck_sql(q), 1))
    rows.append(("DuckDB ORDER BY array_cosine_distance", f"{dk * 1e3:.1f} ms/query",
                 f"{dk / base:.1f}x baseline"))
    f = Filters(bbox=parse_bbox("-5,40,5,50"))
    se = statistics.median(timeit(lambda: search(session, f, limit=100), 3))
    rows.append(("search bbox (random-order file)", f"{se * 1e3:.1f} ms", ""))

    print(f"\nmtquery query benchmark, {dt.date.today()}, {platform.machine()}, "
          f"{os.cpu_count()} cores")
    w = max(len(r[0]) for r in rows)
    print(f"{'what':<{w}}  {'result':>18}  ratio")
    for name, res, ratio in rows:
        print(f"{name:<{w}}  {res:>18}  {ratio}")


def _array_literal(q: np.ndarray) -> str:
    # benchmark-only: a numeric literal built from our own float32 array, not user input
    return "[" + ",".join(f"{v:.8g}" for v in q.tolist()) + f"]::FLOAT[{len(q)}]"


if __name__ == "__main__":
    main()
