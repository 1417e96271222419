"""Building the approximate kNN index (see ``mtquery.index`` for the layout and search).

One pass writes the dataset's VectorStore (unit vectors + result columns) into the index's
staging folder; PCA, the IVF coarse quantiser and the 8-bit codes are trained on a sample of
it; every row is added; nprobe is calibrated for recall@10 >= TARGET_RECALL on sample rows
used as queries; then the staging folder is renamed into place (an older index there is
replaced only at that moment, so a killed build never leaves a half index)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtquery.datasets import Dataset, resolve
from mtquery.errors import DataError, UsageError
from mtquery.index import (
    FORMAT,
    MANIFEST,
    STORE,
    AnnIndex,
    default_index_dir,
    faiss_module,
    pca_arrays,
)
from mtquery.progress import ProgressCallback, emit
from mtquery.staging import discard, new_staging, tidy
from mtquery.store import fingerprint, top_k_rows, write_store

KINDS = ("ivf-sq8",)
DEFAULT_KIND = "ivf-sq8"
TARGET_RECALL = 0.97
BATCH = 65_536


@dataclass
class BuildParams:
    kind: str = DEFAULT_KIND
    nlist: int | None = None       # default: ~sqrt(rows), a power of two, 16..8192
    pca_dim: int | None = None     # default: dim / 2 (rounded to a multiple of 8)
    rerank: int = 256              # candidates rescored exactly per query
    nprobe: int | None = None      # default: calibrated for TARGET_RECALL on sample queries
    sidecar: str = "float32"       # float32 | float16
    train_rows: int | None = None  # default: 40 x nlist (at least 20k)
    seed: int = 0
    threads: int | None = None
    by_residual: bool = True       # codes of residuals to the list centroid (False: of the
                                   # vectors; measured no faster at equal recall, 200k x 768)

    def check(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown index kind {self.kind!r}; choose one of "
                             f"{', '.join(KINDS)}", "kind")
        if self.sidecar not in ("float32", "float16"):
            raise UsageError("sidecar must be float32 or float16", "sidecar")
        for name in ("nlist", "pca_dim", "rerank", "nprobe", "train_rows", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise UsageError(f"{name} must be a positive integer (got {v})", name)


def nlist_for(n: int) -> int:
    """~sqrt(rows) as a power of two (1024 for 1M, 4096 for 20M), at most rows / 39 (faiss'
    minimum of training points per centroid)."""
    p2 = int(min(8192, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))
    return max(1, min(p2, n // 39))


def build_index(dataset: Dataset | str, out_dir: str | Path | None = None,
                params: BuildParams | None = None,
                progress: ProgressCallback | None = None) -> Path:
    """Build the index of a local dataset into ``out_dir`` (default beside the data)."""
    p = params or BuildParams()
    p.check()
    ds = resolve(dataset)
    if ds.remote or not ds.local_files:
        raise DataError("an index is built over local files; download the remote dataset "
                        "first (or point at a local copy)")
    fp = fingerprint(ds.local_files)
    if sum(f["rows"] for f in fp) == 0:
        raise DataError("the dataset has no rows to index")
    out = Path(out_dir) if out_dir else default_index_dir(ds)
    if out.exists() and not (out / MANIFEST).is_file() and (
            not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and is not an mtquery index; choose another index_dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = new_staging(out.parent, out.name)
    try:
        manifest = _build(staging, fp, ds, p, progress)
        _publish(staging, out)
    except BaseException:
        discard(staging)
        raise
    emit(progress, "index", message=f"index written to {out} in "
         f"{manifest['build']['total_s']:.1f} s (nprobe {manifest['nprobe']})")
    return out


def _publish(staging: Path, out: Path) -> None:
    """Rename the staging folder to ``out``; an older index there is moved aside first and
    removed after."""
    old = None
    if out.exists():
        old = new_staging(out.parent, out.name + ".old", directory=False)
        os.rename(out, old)
    os.rename(staging, out)
    if old is not None:
        discard(old)
    tidy(out.parent)


def _build(tmp: Path, fp: list[dict], ds: Dataset, p: BuildParams,
           progress: ProgressCallback | None) -> dict:
    faiss = faiss_module()
    if p.threads:
        faiss.omp_set_num_threads(int(p.threads))
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def say(message: str) -> None:
        emit(progress, "index", message=message)

    (tmp / STORE).mkdir()
    t0 = time.perf_counter()
    store = write_store(tmp / STORE, fp, p.sidecar, progress=progress)
    n, dim = store.n, store.dim
    vec = store.matrix()
    timings["read_vectors_s"] = time.perf_counter() - t0
    say(f"read {n:,} x {dim} vectors in {timings['read_vectors_s']:.1f} s")
    nlist = max(1, min(int(p.nlist or nlist_for(n)), n))
    pca_dim = min(int(p.pca_dim or max(8, (dim // 2) // 8 * 8)), dim)
    t0 = time.perf_counter()
    rng = np.random.default_rng(p.seed)
    n_train = int(min(n, p.train_rows or max(20_000, 40 * nlist)))
    sample = np.nan_to_num(np.asarray(vec[np.sort(rng.choice(n, n_train, replace=False))],
                                      dtype=np.float32))
    pca = faiss.PCAMatrix(dim, pca_dim, 0.0, False)
    pca.train(sample)
    a, b = pca_arrays(pca)
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(pca_dim), pca_dim, nlist,
                                        faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
    ivf.cp.niter = 12
    ivf.by_residual = p.by_residual
    ivf.cp.seed = p.seed
    ivf.train(np.ascontiguousarray(sample @ a.T + b))
    timings["train_s"] = time.perf_counter() - t0
    say(f"trained PCA {dim}->{pca_dim}, IVF{nlist}, SQ8 on {n_train:,} rows in "
        f"{timings['train_s']:.1f} s")
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        x = np.nan_to_num(np.asarray(vec[lo:lo + BATCH], dtype=np.float32))
        ivf.add_with_ids(np.ascontiguousarray(x @ a.T + b),
                         np.arange(lo, lo + len(x), dtype=np.int64))
        emit(progress, "adding to the index", len(x), total=n, unit="rows")
    timings["add_s"] = time.perf_counter() - t0
    faiss.write_VectorTransform(pca, str(tmp / "pca.faiss"))
    faiss.write_index(ivf, str(tmp / "ivf.faiss"))
    t0 = time.perf_counter()
    manifest = {
        "format": FORMAT, "kind": p.kind, "metric": "cosine", "dim": dim, "rows": n,
        "zero_or_invalid_vectors": store.count_invalid(), "nlist": nlist, "pca_dim": pca_dim,
        "rerank": int(p.rerank), "by_residual": bool(p.by_residual),
        "sidecar_dtype": p.sidecar, "train_rows": n_train,
        "dataset": {"spec": ds.spec, "files": fp},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    faiss.omp_set_num_threads(1)  # one query at a time: threads only add overhead
    idx = AnnIndex(tmp, manifest, pca, ivf, store)
    if p.nprobe:
        nprobe, calib = int(p.nprobe), None
    else:
        nprobe, calib = calibrate(idx, rng)
    timings["calibrate_s"] = time.perf_counter() - t0
    manifest["nprobe"] = nprobe
    manifest["calibration"] = calib
    manifest["files"] = {name: (tmp / name).stat().st_size for name in ("pca.faiss",
                                                                        "ivf.faiss")}
    timings["total_s"] = time.perf_counter() - t_start
    manifest["build"] = {k: round(v, 2) for k, v in timings.items()}
    manifest["resident_bytes"] = sum(manifest["files"].values())
    manifest["float32_vector_bytes"] = n * dim * 4
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def exact_neighbours(vec: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k row ids of each unit query over all rows, by batched scans."""
    n = len(vec)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for lo in range(0, n, BATCH * 4):
        x = np.nan_to_num(np.asarray(vec[lo:lo + BATCH * 4], dtype=np.float32), nan=0.0)
        s_all = np.concatenate([best_s, q @ x.T], 1)
        i_all = np.concatenate([best_i, np.broadcast_to(np.arange(lo, lo + len(x)),
                                                        (len(q), len(x)))], 1)
        cols, best_s = top_k_rows(s_all, k)
        best_i = np.take_along_axis(i_all, cols, 1)
    return best_i


def calibrate(idx: AnnIndex, rng: np.random.Generator, queries: int = 64,
              target: float = TARGET_RECALL) -> tuple[int, dict]:
    """Smallest nprobe whose recall@10 (with the rerank) reaches ``target`` on sample rows
    used as queries, against an exact batched scan."""
    n = idx.rows
    qids = np.sort(rng.choice(n, min(queries, n), replace=False))
    q = np.asarray(idx.vectors[qids], dtype=np.float32)
    q = q[np.isfinite(q).all(axis=1)]
    k = min(10, n)
    truth = [set(r) for r in exact_neighbours(idx.vectors, q, k).tolist()]
    tried = {}
    nprobe = 1
    while True:
        hits = sum(len(truth[i] & set(idx.search(q[i], k, nprobe=nprobe)[0].tolist()))
                   for i in range(len(q)))
        rec = hits / max(1, len(q) * k)
        tried[nprobe] = round(rec, 4)
        if rec >= target or nprobe >= idx.nlist:
            break
        nprobe = min(idx.nlist, nprobe * 2 if nprobe < 8 else int(nprobe * 1.5))
    return nprobe, {"queries": len(q), "target_recall": target, "recall_by_nprobe": tried}
