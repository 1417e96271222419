#!/usr/bin/env python
"""Benchmark ``score`` / ``classify`` (issue 20): scoring is a matrix-vector product, so it must
run near memory bandwidth.

For each of two seeded synthetic distributions (``lowrank``: clustered land-cover types;
``isotropic``: unit centres plus isotropic noise), N x DIM rows in the standard schema:

1. the scoring kernel over the vector store (``mtquery.find.kernel.store_dot``), float16 and
   float32 stores, against the baselines measured in the same run: DuckDB
   ``array_cosine_similarity`` over the same rows (an in-memory DuckDB table, and straight from
   the Parquet file), and NumPy's own float16 cast + BLAS; answers compared (max abs diff);
2. ``mtquery.score`` end to end (DuckDB streams the region's columns, the store the vectors);
3. ``mtquery.classify`` with 2,000 labels (1,000 positives, 1,000 negatives): spatial CV over
   the C grid, the fit, and every fragment's probability;

then resident memory (peak RSS of a fresh process) while scoring BIG rows: end to end with a
GeoParquet output (``--big-dim``), and the kernel over a float16 store of BIG x DIM rows.

    flock /tmp/mtquery-heavy.lock .venv/bin/python benchmarks/find_bench.py
        [--rows 1000000] [--dim 768] [--big-rows 10000000] [--big-dim 64] [--out out/find_bench]
        [--skip-big] [--tiled]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DISTRIBUTIONS = ("lowrank", "isotropic")


def best(fn, repeat: int = 3) -> tuple[float, object]:
    fn()  # warm: page cache, imports, BLAS threads
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def dataset(out: Path, rows: int, dim: int, dist: str) -> Path:
    from mtquery.synth import SynthSpec, write

    path = out / f"{dist}_{rows}x{dim}.parquet"
    if not path.exists():
        t = time.perf_counter()
        write(path, SynthSpec(rows=rows, dim=dim, seed=0, distribution=dist))
        print(f"  wrote {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def store(out: Path, data: Path, dtype: str):
    from mtquery.vectors.store import fingerprint, load_store, write_store

    fp = fingerprint([data])
    where = out / f"{data.stem}.{dtype}.store"
    st = load_store(where, fp)
    if st is None:
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        st = write_store(where, fp, dtype)
    return st


def duckdb_baselines(data: Path, q: np.ndarray, dim: int) -> dict[str, tuple[float, object]]:
    import duckdb

    con = duckdb.connect()
    vec = f"CAST(? AS FLOAT[{dim}])"
    con.execute(f"CREATE TABLE t AS SELECT CAST(embedding AS FLOAT[{dim}]) AS embedding "
                "FROM read_parquet(?)", [str(data)])
    table = best(lambda: con.execute(f"SELECT array_cosine_similarity(embedding, {vec}) "
                                     "AS s FROM t", [q.tolist()]).fetchnumpy()["s"])
    parquet = best(lambda: con.execute(
        f"SELECT array_cosine_similarity(CAST(embedding AS FLOAT[{dim}]), {vec}) AS s "
        "FROM read_parquet(?)", [q.tolist(), str(data)]).fetchnumpy()["s"], repeat=1)
    con.close()
    return {"table": table, "parquet": parquet}


def numpy_half(st, q: np.ndarray) -> np.ndarray:
    """The obvious float16 scan: NumPy's cast per block, then BLAS."""
    x = st.matrix()
    out = np.empty(st.n, np.float32)
    for lo in range(0, st.n, 65_536):
        out[lo:lo + 65_536] = x[lo:lo + 65_536].astype(np.float32) @ q
    return out


def classify_labels(data: Path, st, q: np.ndarray, n: int = 1000) -> tuple[list, list]:
    """``n`` positives among the 5n rows most similar to q, ``n`` random negatives."""
    import pyarrow.parquet as pq

    from mtquery.find.kernel import store_dot

    s = store_dot(st, q)
    rng = np.random.default_rng(0)
    top = np.argsort(-np.nan_to_num(s, nan=-2))[: 5 * n]
    pos = np.sort(rng.choice(top, n, replace=False))
    rest = np.setdiff1d(np.arange(st.n), top)
    neg = np.sort(rng.choice(rest, n, replace=False))
    ids = pq.read_table(data, columns=["unique_id"]).column(0)
    return ids.take(pos).to_pylist(), ids.take(neg).to_pylist()


def run_distribution(out: Path, rows: int, dim: int, dist: str, rows_out: list) -> None:
    import mtquery
    from mtquery.find.kernel import scan_threads, store_dot
    from mtquery.io.cache import cached_store
    from mtquery.io.datasets import resolve

    data = dataset(out, rows, dim, dist)
    os.environ["MTQUERY_CACHE"] = str(out / "cache")
    s16 = store(out, data, "float16")
    s32 = cached_store(resolve(str(data)), dim)  # float32: the store score reads here
    rng = np.random.default_rng(1)
    q = s32.vectors(np.array([123]))[0] + 0.3 * rng.normal(size=dim).astype(np.float32) / 28
    q = (q / np.linalg.norm(q)).astype(np.float32)
    t16, r16 = best(lambda: store_dot(s16, q), repeat=5)
    t16one, _ = best(lambda: store_dot(s16, q, threads=1), repeat=5)
    t32, r32 = best(lambda: store_dot(s32, q), repeat=5)
    tnp, _ = best(lambda: numpy_half(s16, q), repeat=1)
    base = duckdb_baselines(data, q, dim)
    tdb, rdb = base["table"]
    tpq, _ = base["parquet"]
    diff32 = float(np.nanmax(np.abs(r32 - rdb)))
    diff16 = float(np.nanmax(np.abs(r16 - rdb)))
    gb16 = rows * dim * 2 / 1e9
    threads = scan_threads()
    for name, t, diff in ((f"kernel float16 store, {threads} threads", t16, diff16),
                          ("kernel float16 store, 1 thread", t16one, diff16),
                          (f"kernel float32 store, {threads} threads", t32, diff32),
                          ("NumPy float16 cast + BLAS", tnp, None),
                          ("DuckDB array_cosine_similarity, table", tdb, 0.0),
                          ("DuckDB array_cosine_similarity, Parquet", tpq, None)):
        rows_out.append({"distribution": dist, "step": f"score {rows:,} x {dim}: {name}",
                         "seconds": round(t, 3), "vs DuckDB table": round(tdb / t, 1),
                         "GB/s (f16 bytes)": round(gb16 / t, 2),
                         "max abs diff vs DuckDB": None if diff is None else f"{diff:.1e}"})
    te2e, table = best(lambda: mtquery.score(str(data), vector=q, limit=10), repeat=1)
    rows_out.append({"distribution": dist, "step": "mtquery.score end to end (cache store, "
                     "f32)", "seconds": round(te2e, 3), "vs DuckDB table": round(tdb / te2e, 1)})
    pos, neg = classify_labels(data, s32, q)
    marks: dict[str, float] = {}

    def mark(ev) -> None:
        marks.setdefault(ev.task, time.perf_counter())

    t0 = time.perf_counter()
    r = mtquery.classify(str(data), positives=pos, negatives=neg, background=0, limit=10,
                         progress=mark)
    tc = time.perf_counter() - t0
    parts = {k: round(v - t0, 2) for k, v in marks.items()}
    rows_out.append({"distribution": dist, "step": f"mtquery.classify, {len(pos) + len(neg)} "
                     "labels, CV + fit + all probabilities", "seconds": round(tc, 2),
                     "notes": f"starts {parts}; CV AP {r.cv.get('average_precision', 0):.3f}, "
                              f"{r.cv.get('folds')} folds"})


#: peak resident memory of this process (VmHWM: ru_maxrss would include the parent's, which
#: survives fork + exec on Linux)
HWM = """
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

BIG_SCORE = HWM + """
import json, sys, time, numpy as np
import mtquery
t = time.perf_counter()
tab = mtquery.score(sys.argv[1], vector=np.load(sys.argv[2]), limit=10, output=sys.argv[3])
n = int(tab.schema.metadata[b"mtquery:scored"])
print(json.dumps({"seconds": time.perf_counter() - t, "scored": n,
                  "peak_rss_mb": hwm()}))
"""

BIG_KERNEL = HWM + """
import json, sys, time, numpy as np
from mtquery.find.kernel import store_dot
from mtquery.vectors.store import VectorStore
from pathlib import Path
n, dim = int(sys.argv[2]), int(sys.argv[3])
st = VectorStore(path=Path(sys.argv[1]), dim=dim, dtype="float16",
                 fingerprint=({"path": "tiled", "rows": n},))
q = np.random.default_rng(0).normal(size=dim).astype(np.float32)
t = time.perf_counter()
s = store_dot(st, q)
print(json.dumps({"seconds": time.perf_counter() - t, "scored": int(len(s)),
                  "peak_rss_mb": hwm()}))
"""


def subprocess_json(code: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                         text=True, env={**os.environ})
    if res.returncode:
        raise SystemExit(res.stderr)
    return json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])


def big_dataset(out: Path, rows: int, dim: int, parts: int = 10) -> Path:
    """BIG rows as ``parts`` files of the lowrank distribution (one seed each), so that
    writing them never holds more than a part in memory."""
    from mtquery.synth import SynthSpec, write

    folder = out / f"big_{rows}x{dim}"
    folder.mkdir(exist_ok=True)
    per = -(-rows // parts)
    for i in range(parts):
        path = folder / f"part_{i:02d}.parquet"
        if not path.exists():
            write(path, SynthSpec(rows=min(per, rows - i * per), dim=dim, seed=100 + i))
    return folder


def tiled_store(out: Path, src_store: Path, times: int, dim: int) -> Path:
    """A float16 store of ``times`` copies of another's vectors, with its checksums."""
    from mtquery.vectors import integrity

    tiled = out / "tiled.store"
    tiled.mkdir(exist_ok=True)
    src = src_store / "vectors.f16"
    target = tiled / "vectors.f16"
    if not target.exists() or target.stat().st_size != times * src.stat().st_size:
        with open(target, "wb") as fh:
            for _ in range(times):
                with open(src, "rb") as s:
                    shutil.copyfileobj(s, fh, 1 << 24)
        rb = dim * 2
        integrity.write_sums(target, block_bytes=max(1, integrity.BLOCK_BYTES // rb) * rb)
        np.save(tiled / "invalid.npy", np.empty(0, np.int64))
        integrity.write_sums(tiled / "invalid.npy")
    return tiled


def run_big(out: Path, rows: int, big_rows: int, big_dim: int, dim: int, rows_out: list,
            tiled: bool = False) -> None:
    # end to end: BIG x big_dim in 10 files, GeoParquet of every row written
    data = big_dataset(out, big_rows, big_dim)
    os.environ["MTQUERY_CACHE"] = str(out / "cache")
    q = np.random.default_rng(2).normal(size=big_dim).astype(np.float32)
    np.save(out / "q.npy", q)
    subprocess_json(BIG_SCORE, data, out / "q.npy", out / "big_scores.parquet")  # builds cache
    r = subprocess_json(BIG_SCORE, data, out / "q.npy", out / "big_scores.parquet")
    rows_out.append({"distribution": "lowrank", "step": f"mtquery.score {r['scored']:,} x "
                     f"{big_dim} end to end, GeoParquet of all rows", "seconds":
                     round(r["seconds"], 1), "peak RSS MB": round(r["peak_rss_mb"])})
    if not tiled:
        return
    # kernel: a float16 store of BIG x dim (the lowrank store tiled)
    times = -(-big_rows // rows)
    tiled = tiled_store(out, out / f"lowrank_{rows}x{dim}.float16.store", times, dim)
    r = subprocess_json(BIG_KERNEL, tiled, times * rows, dim)
    rows_out.append({"distribution": "lowrank (tiled)", "step": f"kernel float16 store "
                     f"{r['scored']:,} x {dim}", "seconds": round(r["seconds"], 1),
                     "peak RSS MB": round(r["peak_rss_mb"]),
                     "GB/s (f16 bytes)": round(r["scored"] * dim * 2 / 1e9 / r["seconds"], 2)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--big-rows", type=int, default=10_000_000)
    ap.add_argument("--big-dim", type=int, default=64)
    ap.add_argument("--out", default="out/find_bench")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the BIG outputs")
    ap.add_argument("--tiled", action="store_true", help="also scan a float16 store of BIG x "
                    "DIM rows (the DIM store tiled: BIG x DIM x 2 bytes of disk)")
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_out: list[dict] = []
    for dist in DISTRIBUTIONS:
        run_distribution(out, a.rows, a.dim, dist, rows_out)
        print(json.dumps(rows_out[-8:], indent=1), file=sys.stderr)
    if not a.skip_big:
        run_big(out, a.rows, a.big_rows, a.big_dim, a.dim, rows_out, a.tiled)
        if not a.keep:
            shutil.rmtree(out / "tiled.store", ignore_errors=True)
            (out / "big_scores.parquet").unlink(missing_ok=True)
    cols = ["distribution", "step", "seconds", "vs DuckDB table", "GB/s (f16 bytes)",
            "max abs diff vs DuckDB", "peak RSS MB", "notes"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows_out:
        print("| " + " | ".join("" if r.get(c) is None else str(r[c]) for c in cols) + " |")
    print(f"\ncpu: {os.cpu_count()} cores; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if a.json:
        Path(a.json).write_text(json.dumps(rows_out, indent=1))


if __name__ == "__main__":
    main()
