#!/usr/bin/env python
"""Evaluation benchmark: linear probe on 100k x 768 and retrieval with 1,000 queries over
200k x 768, timed per stage, next to the time of loading the same vectors with pyarrow alone.

Data: SYNTHETIC clustered vectors (10 classes; class centre + low-rank noise + isotropic noise,
seeded) written as a standard embedding GeoParquet (FixedSizeList<float32>[768], 50k-row row
groups) in a temp folder, plus label files keyed by unique_id.

    python benchmarks/eval_bench.py [--probe-rows 100000] [--retrieval-rows 200000]
                                    [--dim 768] [--queries 1000] [--ann] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

N_CLASSES = 10


def make_dataset(path: Path, n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Write ``n`` rows; returns the class of each row."""
    import shapely

    from mtquery.standard.schema import arrow_schema, embedding_array, with_geo_metadata

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLASSES, dim)).astype(np.float32)
    basis = rng.normal(size=(16, dim)).astype(np.float32) / 4
    classes = rng.integers(0, N_CLASSES, n)
    schema = arrow_schema(dim)
    chunk = 50_000
    with pq.ParquetWriter(path, with_geo_metadata(schema.empty_table()).schema) as w:
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            c = classes[s:s + m]
            v = (centres[c] * (4.8 / np.sqrt(dim))
                 + rng.normal(size=(m, 16)).astype(np.float32) @ basis
                 + 0.5 * rng.normal(size=(m, dim)).astype(np.float32))
            lat = rng.uniform(-60, 70, m)
            lon = rng.uniform(-180, 179.9, m)
            boxes = shapely.box(lon, lat, lon + 0.02, lat + 0.02)
            ids = [hashlib.sha256(f"{seed}:{s + i}".encode()).hexdigest() for i in range(m)]
            cols = {
                "unique_id": pa.array(ids, pa.string()),
                "embedding": embedding_array(v),
                "timestamp": pa.array(["20200101T000000"] * m, pa.string()),
                "product_id": pa.array(["synthetic"] * m, pa.string()),
                "grid_cell": pa.array([f"{i // 25}U_0R" for i in range(s, s + m)], pa.string()),
                "grid_row_u": pa.array(np.zeros(m, np.int16)),
                "grid_col_r": pa.array(np.zeros(m, np.int16)),
                "geometry": pa.array(shapely.to_wkb(boxes).tolist(), pa.binary()),
                "centre_lat": pa.array((lat + 0.01).astype(np.float32)),
                "centre_lon": pa.array((lon + 0.01).astype(np.float32)),
                "utm_footprint": pa.array([""] * m, pa.string()),
                "utm_crs": pa.array(["EPSG:4326"] * m, pa.string()),
                "pixel_bbox": pa.array([[0, 0, 224, 224]] * m, pa.list_(pa.int64())),
            }
            w.write_table(pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema),
                          row_group_size=chunk)
    return classes


def write_labels(emb: Path, classes: np.ndarray, n: int, out: Path) -> None:
    ids = pq.read_table(emb, columns=["unique_id"]).column("unique_id").slice(0, n)
    pq.write_table(pa.table({"unique_id": ids,
                             "label": pa.array([f"class{c}" for c in classes[:n]])}), out)


def pyarrow_load(path: Path, n: int | None = None) -> float:
    from mtquery.standard.schema import embedding_matrix

    t0 = time.perf_counter()
    pf = pq.ParquetFile(path)
    if n is None or n >= pf.metadata.num_rows:
        col = pf.read(columns=["embedding"]).column("embedding")
    else:
        groups, rows = [], 0
        for i in range(pf.metadata.num_row_groups):
            if rows >= n:
                break
            groups.append(i)
            rows += pf.metadata.row_group(i).num_rows
        col = pf.read_row_groups(groups, columns=["embedding"]).column("embedding").slice(0, n)
    X = embedding_matrix(col)
    assert X.shape[0] == (n or X.shape[0])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe-rows", type=int, default=100_000)
    ap.add_argument("--retrieval-rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--ann", action="store_true", help="also build faiss HNSW and compare")
    ap.add_argument("--keep", help="keep the generated data in this folder")
    a = ap.parse_args()

    from mtquery.eval import runner

    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="mtquery-eval-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    n = max(a.probe_rows, a.retrieval_rows)
    emb = work / f"bench_{n}x{a.dim}.parquet"
    t0 = time.perf_counter()
    if not emb.exists():
        classes = make_dataset(emb, n, a.dim)
        np.save(work / "classes.npy", classes)
    classes = np.load(work / "classes.npy")
    t_make = time.perf_counter() - t0
    probe_labels = work / "probe_labels.parquet"
    ret_labels = work / "retrieval_labels.parquet"
    write_labels(emb, classes, a.probe_rows, probe_labels)
    write_labels(emb, classes, a.retrieval_rows, ret_labels)
    print(f"data: {emb} ({emb.stat().st_size / 1e6:.0f} MB, {n} x {a.dim}), made in "
          f"{t_make:.1f} s; cpus {os.cpu_count()}", flush=True)

    pyarrow_load(emb, a.probe_rows)  # warm the page cache for both paths
    t_pa_probe = min(pyarrow_load(emb, a.probe_rows) for _ in range(2))
    doc = runner.linear_probe(str(emb), probe_labels, seeds=a.seeds, split="random",
                              argv=sys.argv, pca_map=True)
    tp = doc["timings_s"]
    t_pa_ret = min(pyarrow_load(emb, a.retrieval_rows) for _ in range(2))
    rdoc = runner.retrieval(str(emb), ret_labels, n_queries=a.queries, ks="1,5,10,50",
                            ann="hnsw" if a.ann else None, argv=sys.argv, pca_map=False)
    tr = rdoc["timings_s"]
    nseeds = len(doc["config"]["seeds"])

    rows = [
        ("probe", f"{a.probe_rows} x {a.dim}", "pyarrow-only load of the same vectors",
         t_pa_probe),
        ("probe", "", "mtquery load, total", tp["load_s"]),
        ("probe", "", "  open dataset (DuckDB + spatial, views)", tp["open_dataset_s"]),
        ("probe", "", "  join labels (DuckDB)", tp["join_labels_s"]),
        ("probe", "", "  read vectors (pyarrow, matched row groups)", tp["read_vectors_s"]),
        ("probe", "", f"linear probe (standardise + logreg), {nseeds} seed(s)", tp["linear_s"]),
        ("probe", "", "k-NN k=1,5,20 (cosine, same split)", tp["knn_s"]),
        ("probe", "", "PCA->RGB sample", tp.get("pca_s", 0.0)),
        ("probe", "", "total", tp["total_s"]),
        ("retrieval", f"{a.queries} q over {a.retrieval_rows} x {a.dim}",
         "pyarrow-only load of the same vectors", t_pa_ret),
        ("retrieval", "", "mtquery load, total", tr["load_s"]),
        ("retrieval", "", "  open dataset (DuckDB + spatial, views)", tr["open_dataset_s"]),
        ("retrieval", "", "  join labels (DuckDB)", tr["join_labels_s"]),
        ("retrieval", "", "  read vectors (pyarrow, matched row groups)", tr["read_vectors_s"]),
        ("retrieval", "", "exact cosine search (batched float32 matmul)",
         tr["exact_search_s"]),
        ("retrieval", "", "relevance + metrics", tr["metrics_s"]),
    ]
    if a.ann:
        rows.append(("retrieval", "", "faiss HNSW build + single-query searches", tr["ann_s"]))
    rows.append(("retrieval", "", "total", tr["total_s"]))
    w = max(len(r[2]) for r in rows)
    print(f"\n{'protocol':<10} {'size':<34} {'stage':<{w}} {'seconds':>8}")
    print("-" * (56 + w))
    for p, size, stage, sec in rows:
        print(f"{p:<10} {size:<34} {stage:<{w}} {sec:>8.2f}")
    lin = doc["metrics"]["splits"]["random"]["summary"]["linear"]
    m = rdoc["metrics"]["metrics"]
    print(f"\nprobe: OA {lin['oa']['mean']:.4f}, macro-F1 {lin['macro_f1']['mean']:.4f}; "
          f"load / pyarrow-only = {tp['load_s'] / t_pa_probe:.2f}x; load share of probe total "
          f"{100 * tp['load_s'] / tp['total_s']:.0f} %")
    print(f"retrieval: P@10 {m['precision@10']:.4f}, mAP@10 {m['map@10']:.4f}, "
          f"nDCG@10 {m['ndcg@10']:.4f}; exact search "
          f"{rdoc['latency']['exact_ms_per_query_batched']:.2f} ms/query (batched)")
    if a.ann:
        ann = rdoc["metrics"]["ann"]
        print(f"ANN (faiss HNSW): recall@10 vs exact {ann['recall@10_vs_exact']:.3f}, "
              f"p50 {rdoc['latency']['ann_latency_ms_p50']:.2f} ms/query, build "
              f"{rdoc['latency']['ann_build_s']:.1f} s")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
