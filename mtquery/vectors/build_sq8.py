"""The ``ivf-sq8`` kind (mtquery 0.1): PCA to d/2 + IVF + 8-bit scalar codes + exact rerank,
built the old way (store first, then faiss train and add). Kept selectable for comparison
(benchmarks/ann_bench.py); the default kind is built by :mod:`mtquery.vectors.build`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mtquery.io.columns import STANDARD, Roles
from mtquery.progress import ProgressCallback, emit
from mtquery.vectors.index import STORE, faiss_module, pca_arrays
from mtquery.vectors.store import VectorStore, write_store

BATCH = 65_536


def build_sq8(tmp: Path, fp: list[dict], p, nlist_for, progress: ProgressCallback | None,
              roles: Roles = STANDARD
              ) -> tuple[dict, object, object, VectorStore, np.ndarray, dict]:
    """Store, PCA, IVF-SQ8 in ``tmp``; returns (manifest fields, pca, ivf, store, training
    row ids, timings)."""
    faiss = faiss_module()
    timings: dict[str, float] = {}
    (tmp / STORE).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dtype = "float32" if p.sidecar == "auto" else p.sidecar
    store = write_store(tmp / STORE, fp, dtype, progress=progress, roles=roles)
    n, dim = store.n, store.dim
    vec = store.matrix()
    timings["read_vectors_s"] = time.perf_counter() - t0
    nlist = max(1, min(int(p.nlist or nlist_for(n)), n))
    t0 = time.perf_counter()
    rng = np.random.default_rng(p.seed)
    n_train = int(min(n, p.train_rows or max(20_000, 40 * nlist)))
    train_ids = np.sort(rng.choice(n, n_train, replace=False))
    sample = np.nan_to_num(np.asarray(vec[train_ids], dtype=np.float32))
    pca_dim = min(int(p.pca_dim or max(8, (dim // 2) // 8 * 8)), dim)
    pca = faiss.PCAMatrix(dim, pca_dim, 0.0, False)
    pca.train(sample)
    a, b = pca_arrays(pca)
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(pca_dim), pca_dim, nlist,
                                        faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
    ivf.by_residual = p.by_residual
    ivf.cp.niter = 12
    ivf.cp.seed = p.seed
    ivf.train(np.ascontiguousarray(sample @ a.T + b))
    timings["train_s"] = time.perf_counter() - t0
    emit(progress, "index", message=f"trained IVF{nlist}, PCA {dim}->{pca_dim}, SQ8 on "
         f"{n_train:,} rows in {timings['train_s']:.1f} s")
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        x = np.nan_to_num(np.asarray(vec[lo:lo + BATCH], dtype=np.float32))
        ivf.add_with_ids(np.ascontiguousarray(x @ a.T + b),
                         np.arange(lo, lo + len(x), dtype=np.int64))
        emit(progress, "adding to the index", len(x), total=n, unit="rows")
    timings["add_s"] = time.perf_counter() - t0
    faiss.write_VectorTransform(pca, str(tmp / "pca.faiss"))
    fields = {"dim": dim, "rows": n, "nlist": nlist, "pca_dim": pca_dim, "bits": None,
              "sidecar_dtype": dtype, "train_rows": n_train, "by_residual": bool(p.by_residual)}
    return fields, pca, ivf, store, train_ids, timings
