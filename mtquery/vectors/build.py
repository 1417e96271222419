"""Building the approximate kNN index (see ``mtquery.vectors.index`` for the layout and search).

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

from mtquery.errors import DataError, UsageError
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.staging import discard, new_staging, tidy
from mtquery.progress import ProgressCallback, emit
from mtquery.vectors import integrity
from mtquery.vectors.calibrate import calibrate
from mtquery.vectors.index import (
    FORMAT,
    MANIFEST,
    STORE,
    AnnIndex,
    default_index_dir,
    faiss_module,
    pca_arrays,
)
from mtquery.vectors.store import fingerprint, write_store

#: ivf-rabitq: RaBitQ codes of the full unit vectors (multi-bit), the default;
#: ivf-sq8: PCA to d/2 + 8-bit codes (mtquery 0.1; loses recall on isotropic data)
KINDS = ("ivf-rabitq", "ivf-sq8")
DEFAULT_KIND = "ivf-rabitq"
TARGET_RECALL = 0.95
BATCH = 65_536
DEFAULT_RERANK = {"ivf-rabitq": 50, "ivf-sq8": 256}


@dataclass
class BuildParams:
    kind: str = DEFAULT_KIND
    nlist: int | None = None       # default: ~sqrt(rows), a power of two, 16..8192
    pca_dim: int | None = None     # ivf-sq8: code dimension, default dim / 2
    rerank: int | None = None      # candidates rescored at k=10; default calibrated
                                   # (ivf-rabitq), 256 (ivf-sq8)
    nprobe: int | None = None      # default: calibrated for target_recall
    bits: int = 2                  # ivf-rabitq bits per dimension (1..9); 2 measured best:
                                   # 200k x 768 hard data, recall 0.986 at 50 candidates,
                                   # 0.3 ms, 212 B/row (1 bit: 0.86 at 100; 4: 16 s build)
    query_bits: int = 8            # ivf-rabitq query quantisation
    target_recall: float = TARGET_RECALL  # recall@10 the calibration aims for
    latency_budget: float = 0.5    # fallback when the index is slower than this fraction
                                   # of an exact scan at the target recall
    sidecar: str = "float32"       # float32 | float16
    train_rows: int | None = None  # default: 40 x nlist (at least 20k)
    seed: int = 0
    threads: int | None = None
    by_residual: bool = True       # ivf-sq8: codes of residuals to the list centroid

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
        if not 1 <= int(self.bits) <= 9:
            raise UsageError(f"bits must be within 1..9 (got {self.bits})", "bits")
        if not 0 < float(self.target_recall) <= 1:
            raise UsageError(f"target_recall must be in (0, 1] (got {self.target_recall})",
                             "target_recall")
        if not float(self.latency_budget) > 0:
            raise UsageError(f"latency_budget must be positive (got {self.latency_budget})",
                             "latency_budget")


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
    t0 = time.perf_counter()
    rng = np.random.default_rng(p.seed)
    n_train = int(min(n, p.train_rows or max(20_000, 40 * nlist)))
    train_ids = np.sort(rng.choice(n, n_train, replace=False))
    sample = np.nan_to_num(np.asarray(vec[train_ids], dtype=np.float32))
    if p.kind == "ivf-sq8":
        pca_dim = min(int(p.pca_dim or max(8, (dim // 2) // 8 * 8)), dim)
        pca = faiss.PCAMatrix(dim, pca_dim, 0.0, False)
        pca.train(sample)
        a, b = pca_arrays(pca)
        ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(pca_dim), pca_dim, nlist,
                                            faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
        ivf.by_residual = p.by_residual
        codes = f"PCA {dim}->{pca_dim}, SQ8"
    else:
        pca, pca_dim, a, b = None, dim, None, None
        ivf = faiss.IndexIVFRaBitQ(faiss.IndexFlatL2(dim), dim, nlist, faiss.METRIC_L2, True,
                                   int(p.bits))
        codes = f"RaBitQ {p.bits} bit(s)/dim"
    ivf.cp.niter = 12
    ivf.cp.seed = p.seed
    ivf.train(np.ascontiguousarray(sample if a is None else sample @ a.T + b))
    del sample
    timings["train_s"] = time.perf_counter() - t0
    say(f"trained IVF{nlist}, {codes} on {n_train:,} rows in {timings['train_s']:.1f} s")
    t0 = time.perf_counter()
    for lo in range(0, n, BATCH):
        x = np.nan_to_num(np.asarray(vec[lo:lo + BATCH], dtype=np.float32))
        ivf.add_with_ids(np.ascontiguousarray(x if a is None else x @ a.T + b),
                         np.arange(lo, lo + len(x), dtype=np.int64))
        emit(progress, "adding to the index", len(x), total=n, unit="rows")
    timings["add_s"] = time.perf_counter() - t0
    if pca is not None:
        faiss.write_VectorTransform(pca, str(tmp / "pca.faiss"))
    faiss.write_index(ivf, str(tmp / "ivf.faiss"))
    t0 = time.perf_counter()
    manifest = {
        "format": FORMAT, "kind": p.kind, "metric": "cosine", "dim": dim, "rows": n,
        "zero_or_invalid_vectors": store.count_invalid(), "nlist": nlist, "pca_dim": pca_dim,
        "rerank": int(p.rerank or DEFAULT_RERANK[p.kind]), "by_residual": bool(p.by_residual),
        "bits": int(p.bits) if p.kind == "ivf-rabitq" else None,
        "query_bits": int(p.query_bits), "sidecar_dtype": p.sidecar, "train_rows": n_train,
        "dataset": {"spec": ds.spec, "files": fp},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    faiss.omp_set_num_threads(1)  # one query at a time: threads only add overhead
    idx = AnnIndex(tmp, manifest, pca, ivf, store)
    calib = calibrate(idx, rng, exclude=train_ids, target=p.target_recall,
                      budget=p.latency_budget, nprobe=p.nprobe, rerank=p.rerank)
    timings["calibrate_s"] = time.perf_counter() - t0
    manifest["nprobe"] = calib["nprobe"]
    manifest["rerank"] = calib["rerank"]
    manifest["calibration"] = calib
    if calib.get("fallback"):
        say(f"index kept but not used by default: {calib['fallback']}")
    else:
        say(f"calibrated: nprobe {calib['nprobe']}, rerank {calib['rerank']}: recall@10 "
            f"{calib['recall']:.3f} at {calib['latency_ms']:.2f} ms (exact scan "
            f"{calib['exact_ms']:.1f} ms)")
    manifest["files"] = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())
                         if f.suffix == ".faiss"}
    timings["total_s"] = time.perf_counter() - t_start
    manifest["build"] = {k: round(v, 2) for k, v in timings.items()}
    manifest["resident_bytes"] = sum(manifest["files"].values())
    manifest["float32_vector_bytes"] = n * dim * 4
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    integrity.seal(tmp)  # checksums of the manifest and codes (the store wrote its own)
    return manifest
