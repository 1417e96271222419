"""Building the approximate kNN index (``mtquery.vectors.index`` has the layout and search).

The default kind, ``ivf-rabitq``, is built in one streaming pass over the Parquet files:

1. **sample** - the k-means rows and the calibration queries, from units of row groups
   spread evenly over the files (``chunks.read_sample``; bounded: at most 96 units read);
2. **train** - two-level coarse centroids on that sample (``ivf_lists.train_coarse``);
3. **pass** - every unit read once: unit vectors appended to the store, result columns,
   lists and RaBitQ codes, and the queries' exact top-k (``chunks.run_pass``);
4. **assemble** - the inverted lists from the saved codes, the store's files, checksums;
5. **calibrate** - nprobe and rerank depth against that ground truth (``calibrate``);
6. **publish** - the finished directory is renamed into place (an older index there is
   replaced only at that moment, so a killed build never leaves a half index).

Everything is written into ``.<index name>.partial/`` beside the index: hidden (never read
as data), locked while a build runs, kept when the build is killed and picked up by the next
``build_index`` of the same files with the same parameters (which goes on after the last
finished unit of the pass), removed once the index is published.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.io.columns import Roles
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.roles import roles_of
from mtquery.io.staging import publish
from mtquery.progress import ProgressCallback, emit
from mtquery.vectors import integrity, rowsfile
from mtquery.vectors.calibrate import QUERIES, calibrate, exact_neighbours
from mtquery.vectors.chunks import (
    CHUNK_ROWS,
    Truth,
    chunk_files,
    plan_units,
    read_sample,
    row_files,
    run_pass,
)
from mtquery.vectors.index import (
    FORMAT,
    MANIFEST,
    STORE,
    AnnIndex,
    default_index_dir,
    faiss_module,
)
from mtquery.vectors.ivf_lists import (
    Coarse,
    add_codes,
    imbalance,
    list_sizes,
    new_ivf,
    train_coarse,
)
from mtquery.vectors.store import (
    CHUNK_ROWS as SUMS_ROWS,
)
from mtquery.vectors.store import (
    DTYPES,
    FORMAT_VERSION,
    RESULT_SCHEMA,
    ROWS_BATCH,
    VectorStore,
    fingerprint,
)

#: ivf-rabitq: RaBitQ codes of the full unit vectors, the default;
#: ivf-sq8: PCA to d/2 + 8-bit codes (mtquery 0.1; loses recall on isotropic data)
KINDS = ("ivf-rabitq", "ivf-sq8")
DEFAULT_KIND = "ivf-rabitq"
TARGET_RECALL = 0.95
DEFAULT_RERANK = {"ivf-rabitq": 50, "ivf-sq8": 256}
#: sidecar "auto": float16 once the float32 vectors would pass this many bytes
AUTO_F16_BYTES = 4 << 30
K = 10


@dataclass
class BuildParams:
    kind: str = DEFAULT_KIND
    nlist: int | None = None       # default: ~sqrt(rows), a power of two, 16..8192
    pca_dim: int | None = None     # ivf-sq8: code dimension, default dim / 2
    rerank: int | None = None      # candidates rescored at k=10; default calibrated
    nprobe: int | None = None      # default: calibrated for target_recall
    bits: int = 1                  # ivf-rabitq bits per dimension (1..9): 1 encodes ~7x
                                   # faster than 2 and a deeper rerank restores the recall
                                   # (docs/scale.md, benchmarks/scale_bench.py)
    query_bits: int = 8            # ivf-rabitq query quantisation
    target_recall: float = TARGET_RECALL  # recall@10 the calibration aims for
    latency_budget: float = 0.5    # fallback when the index is slower than this fraction
                                   # of an exact scan at the target recall
    sidecar: str = "auto"          # float32 | float16 | auto (float16 above 4 GiB of
                                   # float32 vectors: 1.4M rows at 768-d)
    train_rows: int | None = None  # default: 128 x nlist, at most 256k (at least 20k)
    seed: int = 0
    threads: int | None = None
    by_residual: bool = True       # ivf-sq8: codes of residuals to the list centroid
    chunk_rows: int = CHUNK_ROWS   # rows of a resumable chunk of the pass (row groups whole)

    def check(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown index kind {self.kind!r}; choose one of "
                             f"{', '.join(KINDS)}", "kind")
        if self.sidecar not in ("float32", "float16", "auto"):
            raise UsageError("sidecar must be float32, float16 or auto", "sidecar")
        for name in ("nlist", "pca_dim", "rerank", "nprobe", "train_rows", "threads",
                     "chunk_rows"):
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

    def pass_key(self) -> dict:
        """The parameters the sample, training and pass depend on (a resume needs them
        unchanged; calibration settings may differ)."""
        keep = ("kind", "nlist", "pca_dim", "bits", "query_bits", "sidecar", "train_rows",
                "seed", "by_residual", "chunk_rows")
        return {k: v for k, v in asdict(self).items() if k in keep}


def nlist_for(n: int) -> int:
    """~sqrt(rows) as a power of two (1024 for 1M, 2048 for 4M, 4096 for 20M), at most
    rows / 39 (faiss' minimum of training points per centroid)."""
    p2 = int(min(8192, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))
    return max(1, min(p2, n // 39))


def store_dtype(sidecar: str, n: int, dim: int) -> str:
    if sidecar != "auto":
        return sidecar
    return "float16" if n * dim * 4 > AUTO_F16_BYTES else "float32"


def partial_dir(out: Path) -> Path:
    """Where a build of ``out`` works (and a killed one left its finished chunks)."""
    return out.parent / f".{out.name}.partial"


@contextmanager
def locked(folder: Path):
    """Hold ``folder/lock`` for the block; a second build of the same index is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / "lock", "w")  # noqa: SIM115 - held for the block
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise DataError(f"another build is writing {folder.parent}; wait for it to "
                        "finish") from None
    try:
        yield
    finally:
        fh.close()


def build_index(dataset: Dataset | str, out_dir: str | Path | None = None,
                params: BuildParams | None = None,
                progress: ProgressCallback | None = None) -> Path:
    """Build the index of a local dataset into ``out_dir`` (default beside the data); a
    build of the same files and parameters killed before goes on where it stopped."""
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
    roles = roles_of(ds)  # a file no roles can read is refused before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    part = partial_dir(out)
    with locked(part):
        try:
            manifest = _build(part, fp, ds, p, progress, roles)
        except DataError:  # data no build can read (ragged vectors...): nothing to resume
            shutil.rmtree(part, ignore_errors=True)
            raise
        publish(part / "index", out, on_exists="replace")  # an older index goes
    shutil.rmtree(part, ignore_errors=True)
    emit(progress, "index", message=f"index written to {out} in "
         f"{manifest['build']['total_s']:.1f} s (nprobe {manifest['nprobe']})")
    return out


def _fresh_work(part: Path, key: str) -> bool:
    """Keep the work of a killed build with the same key; start over otherwise. True when
    there is earlier work to go on from."""
    state = part / "state.json"
    try:
        same = json.loads(state.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError):
        same = False
    if same and (part / "work" / "coarse.npz").is_file():
        return True
    for child in part.iterdir():
        if child.name != "lock":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    state.write_text(json.dumps({"key": key}), encoding="utf-8")
    return False


def _build(part: Path, fp: list[dict], ds: Dataset, p: BuildParams,
           progress: ProgressCallback | None, roles: Roles) -> dict:
    faiss = faiss_module()
    if p.threads:
        faiss.omp_set_num_threads(int(p.threads))
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def say(message: str) -> None:
        emit(progress, "index", message=message)

    key = hashlib.sha256(json.dumps({"fp": fp, "params": p.pass_key(), "format": FORMAT,
                                     "columns": roles.key()},
                                    sort_keys=True).encode()).hexdigest()
    resumed = _fresh_work(part, key)
    work, tmp = part / "work", part / "index"
    work.mkdir(exist_ok=True)
    (tmp / STORE).mkdir(parents=True, exist_ok=True)
    n = sum(int(f["rows"]) for f in fp)
    if p.kind == "ivf-sq8":
        return _build_sq8(tmp, fp, ds, p, progress, t_start, roles)
    units = plan_units(fp, chunk_rows=p.chunk_rows, roles=roles)
    nlist = max(1, min(int(p.nlist or nlist_for(n)), n))
    n_train = int(min(n, p.train_rows or max(20_000, min(128 * nlist, 262_144))))
    t0 = time.perf_counter()
    if not resumed:
        tids, tx, qids, qx = read_sample(units, n_train, QUERIES, p.seed)
        timings["sample_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        coarse = train_coarse(tx, min(nlist, max(1, len(tx))), p.seed)
        np.savez(work / "queries.npz", ids=qids, x=qx, train=tids)
        coarse.save(work / "coarse.tmp.npz")
        os.replace(work / "coarse.tmp.npz", work / "coarse.npz")  # the sample's checkpoint
        timings["train_s"] = time.perf_counter() - t0
        say(f"trained IVF{coarse.nlist} (two-level, {len(coarse.top)} x {coarse.k2}) on "
            f"{len(tx):,} rows in {timings['train_s']:.1f} s")
    else:
        coarse = Coarse.load(work / "coarse.npz")
        with np.load(work / "queries.npz") as z:
            qids, qx = z["ids"], z["x"]
        say(f"resuming the build in {part}")
    dim = coarse.fine.shape[1]
    dtype = store_dtype(p.sidecar, n, dim)
    ivf = new_ivf(coarse, p.bits, p.query_bits)
    truth = Truth(qx, min(K, n))
    t0 = time.perf_counter()
    vec_file = tmp / STORE / DTYPES[dtype][1]
    done = run_pass(units, work, vec_file, np.dtype(DTYPES[dtype][0]), coarse, ivf, truth,
                    on_unit=lambda u, _: emit(progress, "indexing", u.rows, total=n,
                                              unit="rows"))
    if done != n:
        raise DataError("the dataset changed while it was read; run again")
    timings["pass_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    invalid = assemble(ivf, work, len(units), tmp / STORE)
    store = write_store_meta(tmp / STORE, fp, dim, dtype, invalid)
    faiss.write_index(ivf, str(tmp / "ivf.faiss"))
    timings["assemble_s"] = time.perf_counter() - t0
    manifest = _manifest(p, fp, ds, n, dim, coarse.nlist, len(invalid), dtype,
                         n_train, resumed, roles)
    manifest["lists"] = manifest["lists_at_build"] = lists_summary(ivf)
    shutil.copy2(work / "coarse.npz", tmp / "coarse.npz")  # what an update assigns with
    manifest["coded_rows"] = int(ivf.ntotal)  # rows with a direction (invalid ones: none)
    return _finish(tmp, manifest, ivf, store, None, qx, truth.ids, p, timings, t_start, say)


def assemble(ivf, work: Path, n_units: int, store_dir: Path) -> np.ndarray:
    """Fill the lists from the saved codes and write ``rows.arrow``; returns the invalid
    row ids."""
    invalid = []
    for f in chunk_files(work, n_units):
        with np.load(f) as z:
            add_codes(ivf, z["lists"].astype(np.int64), z["ids"], z["codes"])
            invalid.append(z["invalid"])

    def tables():
        for f in row_files(work, n_units):
            with pa.memory_map(str(f)) as src:
                yield pa.ipc.open_file(src).read_all()

    rowsfile.write_batches(tables(), store_dir / "rows.arrow", RESULT_SCHEMA, ROWS_BATCH)
    return np.concatenate(invalid).astype(np.int64) if invalid else np.empty(0, np.int64)


def write_store_meta(store_dir: Path, fp: list[dict], dim: int, dtype: str,
                     invalid: np.ndarray) -> VectorStore:
    """The store's vector checksums (one more read of the vector file: a resumed pass has
    no running hash), ``invalid.npy`` and ``meta.json``, as ``write_store`` leaves them."""
    n = sum(int(f["rows"]) for f in fp)
    np_dtype, name = DTYPES[dtype]
    sums = integrity.VectorSums(store_dir / name)
    if n:
        x = np.memmap(store_dir / name, dtype=np_dtype, mode="r", shape=(n, dim))
        for lo in range(0, n, SUMS_ROWS):
            sums.add(np.asarray(x[lo:lo + SUMS_ROWS]))
        del x
    sums.finish()
    np.save(store_dir / "invalid.npy", np.asarray(invalid, np.int64), allow_pickle=False)
    integrity.write_sums(store_dir / "invalid.npy")
    meta = {"version": FORMAT_VERSION, "dim": int(dim), "dtype": dtype, "rows": n,
            "invalid_rows": int(len(invalid)), "rows_batch": ROWS_BATCH, "fingerprint": fp}
    (store_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    integrity.write_sums(store_dir / "meta.json")
    return VectorStore(path=store_dir, dim=int(dim), dtype=dtype, fingerprint=tuple(fp))


def lists_summary(ivf) -> dict:
    sizes = list_sizes(ivf)
    return {"imbalance": round(imbalance(sizes), 3), "largest": int(sizes.max()),
            "empty": int((sizes == 0).sum())}


def _manifest(p: BuildParams, fp: list[dict], ds: Dataset, n: int, dim: int, nlist: int,
              invalid: int, dtype: str, n_train: int, resumed: bool, roles: Roles) -> dict:
    return {
        "format": FORMAT, "kind": p.kind, "metric": "cosine", "dim": dim, "rows": n,
        "zero_or_invalid_vectors": invalid, "nlist": nlist, "pca_dim": dim,
        "rerank": int(p.rerank or DEFAULT_RERANK[p.kind]), "by_residual": True,
        "bits": int(p.bits), "query_bits": int(p.query_bits), "sidecar_dtype": dtype,
        "train_rows": n_train, "coarse": "two-level", "seed": p.seed,
        "dataset": {"spec": ds.spec, "files": fp}, "resumed": resumed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({} if roles.standard else {"columns": roles.to_dict()}),
    }


def _finish(tmp: Path, manifest: dict, ivf, store: VectorStore, pca, qx: np.ndarray,
            truth: np.ndarray, p: BuildParams, timings: dict, t_start: float, say) -> dict:
    faiss = faiss_module()
    t0 = time.perf_counter()
    faiss.omp_set_num_threads(1)  # one query at a time: threads only add overhead
    idx = AnnIndex(tmp, manifest, pca, ivf, store)
    calib = calibrate(idx, qx, truth, target=p.target_recall, budget=p.latency_budget,
                      nprobe=p.nprobe, rerank=p.rerank)
    timings["calibrate_s"] = time.perf_counter() - t0
    manifest.update(nprobe=calib["nprobe"], rerank=calib["rerank"], calibration=calib)
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
    manifest["float32_vector_bytes"] = manifest["rows"] * manifest["dim"] * 4
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    integrity.seal(tmp)  # checksums of the manifest and codes (the store wrote its own)
    return manifest


def _build_sq8(tmp: Path, fp: list[dict], ds: Dataset, p: BuildParams,
               progress: ProgressCallback | None, t_start: float, roles: Roles) -> dict:
    from mtquery.vectors.build_sq8 import build_sq8

    fields, pca, ivf, store, train_ids, timings = build_sq8(tmp, fp, p, nlist_for, progress,
                                                            roles)
    faiss_module().write_index(ivf, str(tmp / "ivf.faiss"))
    n = store.n
    rng = np.random.default_rng(p.seed)
    pool = np.setdiff1d(np.arange(n), train_ids)
    qids = np.sort(rng.choice(pool, min(QUERIES, len(pool)), replace=False)) if len(pool) \
        else np.arange(min(n, QUERIES))
    qx = store.vectors(qids)
    qx = qx[np.isfinite(qx).all(axis=1)]
    truth = exact_neighbours(store.matrix(), qx, min(K, n))
    manifest = _manifest(p, fp, ds, n, fields["dim"], fields["nlist"],
                         store.count_invalid(), fields["sidecar_dtype"], fields["train_rows"],
                         False, roles)
    manifest.update(fields)
    return _finish(tmp, manifest, ivf, store, pca, qx, truth, p, timings, t_start,
                   lambda m: emit(progress, "index", message=m))
