"""Approximate cosine kNN index: PCA + IVF coarse partition + 8-bit scalar codes, with an exact
float rerank from a memory-mapped vector sidecar.

Layout of an index directory (``<file>.mtindex/`` beside a one-file dataset, ``_mtindex/``
inside a dataset directory, or any ``--index-dir``)::

    manifest.json   what was built from what: dataset fingerprint (every file's path, size,
                    mtime and row count), parameters, sizes of the files below, timings
    pca.faiss       PCA rotation d -> d_pca (faiss VectorTransform)
    ivf.faiss       IndexIVFScalarQuantizer(d_pca, nlist, QT_8bit), L2 on unit vectors
    vectors.f32     (rows, d) unit vectors, float32 (or vectors.f16), raw, memory-mapped

Resident memory is the IVF index: d_pca + 8 bytes a row (12.8 % of the float32 vectors at
d_pca = d / 2). The sidecar is only paged in for the few hundred candidates of a query.

Row ids are global positions in the dataset: the files in the dataset's order, rows in file
order (DuckDB's ``source_file`` / ``source_row`` map onto them).

Search: the query's PCA projection probes ``nprobe`` lists, the best ``rerank`` candidates by
code distance are rescored exactly (cosine on the float vectors) and the top k returned.
Filtered search gets the allowed row ids: few -> exact scan of just those rows (pre-filter);
many -> the IVF search restricted to them by a bitmap selector, with nprobe raised in
proportion to the filter's selectivity (oversampling); results always satisfy the filter.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtquery.datasets import Dataset, resolve
from mtquery.errors import DataError, UsageError
from mtquery.vectorcache import iter_vectors, unit_rows

FORMAT = "mtquery-ann/1"
MANIFEST = "manifest.json"
KINDS = ("ivf-sq8",)
DEFAULT_KIND = "ivf-sq8"
TARGET_RECALL = 0.97
BATCH = 65_536


def _faiss():
    """Import faiss with OpenMP threads that sleep rather than spin when idle: on a small,
    shared machine spinning threads made k-means 3x slower (measured under load)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    return faiss


# ---------------------------------------------------------------- dataset fingerprint


def fingerprint(dataset: Dataset) -> list[dict]:
    """Files, sizes, mtimes and row counts of a local dataset (from the Parquet footers)."""
    import pyarrow.parquet as pq

    if dataset.remote or not dataset.local_files:
        raise DataError("an index is built over local files; download the remote dataset "
                        "first (or point at a local copy)")
    out = []
    for f in dataset.local_files:
        st = Path(f).stat()
        try:
            rows = pq.ParquetFile(f).metadata.num_rows
        except Exception as exc:  # noqa: BLE001 - any footer problem is a data problem
            raise DataError(f"cannot read {f}: {exc}") from exc
        out.append({"path": str(Path(f).resolve()), "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns, "rows": rows})
    return out


def default_index_dir(dataset: Dataset) -> Path:
    files = [Path(f).resolve() for f in dataset.local_files]
    if not files:
        raise DataError("an index is built over local files; download the remote dataset first")
    if len(files) == 1 and not Path(dataset.spec).is_dir():
        return files[0].with_name(files[0].name + ".mtindex")
    spec = Path(dataset.spec)
    if spec.is_dir():
        return spec.resolve() / "_mtindex"
    return Path(os.path.commonpath([str(f.parent) for f in files])) / "_mtindex"


# ---------------------------------------------------------------- building


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


def _nlist_for(n: int) -> int:
    """~sqrt(rows) as a power of two (1024 for 1M, 4096 for 20M), at most rows / 39 (faiss'
    minimum of training points per centroid)."""
    p2 = int(min(8192, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))
    return max(1, min(p2, n // 39))


def build_index(dataset: Dataset | str, out_dir: str | Path | None = None,
                params: BuildParams | None = None,
                log: Callable[[str], None] | None = None) -> Path:
    """Build the index for a local dataset into ``out_dir`` (atomically: a temporary directory
    is renamed into place at the end; an existing index there is replaced)."""
    faiss = _faiss()
    p = params or BuildParams()
    if p.kind not in KINDS:
        raise UsageError(f"unknown index kind {p.kind!r}; choose one of {', '.join(KINDS)}")
    if p.sidecar not in ("float32", "float16"):
        raise UsageError("--sidecar must be float32 or float16")
    say = log or (lambda _m: None)
    ds = resolve(dataset) if not isinstance(dataset, Dataset) else dataset
    fp = fingerprint(ds)
    n = sum(f["rows"] for f in fp)
    if n == 0:
        raise DataError("the dataset has no rows to index")
    out = Path(out_dir) if out_dir else default_index_dir(ds)
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not an mtquery index; choose another --index-dir")
    if p.threads:
        faiss.omp_set_num_threads(int(p.threads))
    t_start = time.perf_counter()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        timings: dict[str, float] = {}
        # 1. stream the vectors once: normalise, write the sidecar
        t0 = time.perf_counter()
        dtype = np.float32 if p.sidecar == "float32" else np.float16
        side_name = "vectors.f32" if dtype == np.float32 else "vectors.f16"
        dim = None
        bad = 0
        with open(tmp / side_name, "wb") as fh:
            for _off, x in iter_vectors([f["path"] for f in fp], dim):
                dim = dim or x.shape[1]
                xn = unit_rows(x)
                bad += int(np.isnan(xn[:, 0]).sum())
                fh.write(xn.astype(dtype, copy=False).tobytes())
        if dim is None:
            raise DataError("the dataset has no vectors")
        timings["read_vectors_s"] = time.perf_counter() - t0
        say(f"read {n:,} x {dim} vectors in {timings['read_vectors_s']:.1f} s")
        vec = np.memmap(tmp / side_name, dtype=dtype, mode="r", shape=(n, dim))
        nlist = int(p.nlist or _nlist_for(n))
        nlist = max(1, min(nlist, n))
        pca_dim = int(p.pca_dim or max(8, (dim // 2) // 8 * 8))
        pca_dim = min(pca_dim, dim)
        # 2. train PCA + coarse quantiser + SQ on a sample
        t0 = time.perf_counter()
        rng = np.random.default_rng(p.seed)
        n_train = int(min(n, p.train_rows or max(20_000, 40 * nlist)))
        sample_ids = np.sort(rng.choice(n, n_train, replace=False))
        sample = np.nan_to_num(np.asarray(vec[sample_ids], dtype=np.float32))
        pca = faiss.PCAMatrix(dim, pca_dim, 0.0, False)
        pca.train(sample)
        pa_, pb_ = _pca_arrays(pca)
        zs = np.ascontiguousarray(sample @ pa_.T + pb_)
        quant = faiss.IndexFlatL2(pca_dim)
        ivf = faiss.IndexIVFScalarQuantizer(quant, pca_dim, nlist,
                                            faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
        ivf.cp.niter = 12
        ivf.by_residual = p.by_residual
        ivf.cp.seed = p.seed
        ivf.train(zs)
        timings["train_s"] = time.perf_counter() - t0
        say(f"trained PCA {dim}->{pca_dim}, IVF{nlist}, SQ8 on {n_train:,} rows in "
            f"{timings['train_s']:.1f} s")
        # 3. add every row
        t0 = time.perf_counter()
        for lo in range(0, n, BATCH):
            x = np.nan_to_num(np.asarray(vec[lo:lo + BATCH], dtype=np.float32))
            z = np.ascontiguousarray(x @ pa_.T + pb_)
            ivf.add_with_ids(z, np.arange(lo, lo + len(x), dtype=np.int64))
        timings["add_s"] = time.perf_counter() - t0
        say(f"added {n:,} rows in {timings['add_s']:.1f} s")
        faiss.write_VectorTransform(pca, str(tmp / "pca.faiss"))
        faiss.write_index(ivf, str(tmp / "ivf.faiss"))
        # 4. calibrate nprobe on held-out-free sample queries (rows of the data)
        t0 = time.perf_counter()
        manifest = {
            "format": FORMAT, "kind": p.kind, "metric": "cosine", "dim": dim, "rows": n,
            "zero_or_invalid_vectors": bad, "nlist": nlist, "pca_dim": pca_dim,
            "rerank": int(p.rerank), "by_residual": bool(p.by_residual),
            "sidecar": side_name, "sidecar_dtype": p.sidecar,
            "train_rows": n_train, "dataset": {"spec": ds.spec, "files": fp},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        idx = AnnIndex(tmp, manifest, pca, ivf, vec)
        faiss.omp_set_num_threads(1)  # one query at a time: threads only add overhead
        if p.nprobe:
            nprobe, calib = int(p.nprobe), None
        else:
            nprobe, calib = calibrate(idx, rng)
        timings["calibrate_s"] = time.perf_counter() - t0
        manifest["nprobe"] = nprobe
        manifest["calibration"] = calib
        manifest["files"] = {name: (tmp / name).stat().st_size
                             for name in ("pca.faiss", "ivf.faiss", side_name)}
        timings["total_s"] = time.perf_counter() - t_start
        manifest["build"] = {k: round(v, 2) for k, v in timings.items()}
        manifest["resident_bytes"] = manifest["files"]["ivf.faiss"] + \
            manifest["files"]["pca.faiss"]
        manifest["float32_vector_bytes"] = n * dim * 4
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        del vec, idx
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"index written to {out} in {timings['total_s']:.1f} s (nprobe {nprobe})")
    return out


def calibrate(idx: AnnIndex, rng: np.random.Generator, queries: int = 64,
              target: float = TARGET_RECALL) -> tuple[int, dict]:
    """Smallest nprobe whose recall@10 (with the rerank) reaches ``target`` on sample rows
    used as queries, against an exact batched scan."""
    n = idx.rows
    qids = np.sort(rng.choice(n, min(queries, n), replace=False))
    q = np.nan_to_num(np.asarray(idx.vectors[qids], dtype=np.float32))
    k = min(10, n)
    best = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_id = np.zeros((len(q), k), dtype=np.int64)
    for lo in range(0, n, BATCH * 4):
        x = np.nan_to_num(np.asarray(idx.vectors[lo:lo + BATCH * 4], dtype=np.float32),
                          nan=0.0)
        s = q @ x.T
        s_all = np.concatenate([best, s], 1)
        id_all = np.concatenate([best_id, np.arange(lo, lo + len(x))[None, :].repeat(len(q), 0)],
                                1)
        part = np.argpartition(-s_all, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(s_all, part, 1)
        best_id = np.take_along_axis(id_all, part, 1)
    truth = [set(r) for r in best_id]
    tried = {}
    nprobe = 1
    while True:
        hits = 0
        for i in range(len(q)):
            ids, _ = idx.search(q[i], k, nprobe=nprobe)
            hits += len(truth[i] & set(ids.tolist()))
        rec = hits / (len(q) * k)
        tried[nprobe] = round(rec, 4)
        if rec >= target or nprobe >= idx.nlist:
            break
        nprobe = min(idx.nlist, nprobe * 2 if nprobe < 8 else int(nprobe * 1.5))
    return nprobe, {"queries": len(q), "target_recall": target, "recall_by_nprobe": tried}


# ---------------------------------------------------------------- loading


@dataclass
class AnnIndex:
    path: Path
    manifest: dict
    pca: object
    ivf: object
    vectors: np.ndarray
    _bitmap_cache: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def nlist(self) -> int:
        return int(self.manifest["nlist"])

    @property
    def files(self) -> list[dict]:
        return self.manifest["dataset"]["files"]

    def file_offsets(self) -> dict[str, int]:
        out, off = {}, 0
        for f in self.files:
            out[f["path"]] = off
            off += f["rows"]
        return out

    # ---- search

    def project(self, x: np.ndarray) -> np.ndarray:
        """PCA projection in numpy (faiss' own apply spins OpenMP threads for one row)."""
        if not hasattr(self, "_pca_ab"):
            self._pca_ab = _pca_arrays(self.pca)
        a, b = self._pca_ab
        return np.ascontiguousarray(x @ a.T + b, dtype=np.float32)

    def _prep(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise DataError(f"query vector has {q.shape[0]} values but the index was built "
                            f"for {self.dim}-d vectors")
        qn = float(np.linalg.norm(q))
        if qn == 0 or not math.isfinite(qn):
            raise DataError("the query vector is zero or not finite; cosine distance is "
                            "undefined")
        return q / qn

    def _rescore(self, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.unique(ids[ids >= 0])
        if ids.size == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        x = np.asarray(self.vectors[ids], dtype=np.float32)
        s = x @ q
        s[~np.isfinite(s)] = -np.inf
        return _top(ids, s, k)

    def search(self, query: np.ndarray, k: int = 10, allowed: np.ndarray | None = None,
               nprobe: int | None = None, rerank: int | None = None,
               prefilter_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, cosine similarities), best first. ``allowed``: sorted unique row ids the
        results must come from (a filter), or None for all rows."""
        faiss = _faiss()

        if k <= 0:
            raise UsageError(f"k must be a positive number of neighbours (got {k})")
        q = self._prep(query)
        nprobe = int(nprobe or self.manifest.get("nprobe") or 16)
        rerank = int(max(rerank or self.manifest.get("rerank", 256), 2 * k))
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            if allowed.size == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            limit = prefilter_max if prefilter_max is not None else max(
                20_000, self.rows // 50)
            if allowed.size <= limit:
                return self.exact(q, k, allowed)
            frac = allowed.size / self.rows
            nprobe = int(min(self.nlist, math.ceil(nprobe * min(1.0 / frac, 32.0))))
        z = self.project(q[None, :])
        ps = faiss.SearchParametersIVF()
        ps.nprobe = min(nprobe, self.nlist)
        if allowed is not None:
            bits = np.zeros(self.rows, dtype=bool)
            bits[allowed] = True
            packed = np.packbits(bits, bitorder="little")
            sel = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(packed))
            ps.sel = sel
        _, cand = self.ivf.search(z, rerank, params=ps)
        ids, scores = self._rescore(cand[0], q, k)
        if allowed is not None:
            ok = np.isin(ids, allowed)
            ids, scores = ids[ok], scores[ok]
            if len(ids) < min(k, allowed.size):  # too few in the probed lists: exact
                return self.exact(q, k, allowed)
        return ids, scores

    def exact(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by a scan of the sidecar (all rows, or only ``allowed``)."""
        q = self._prep(q)
        best_i = np.empty(0, np.int64)
        best_s = np.empty(0, np.float32)
        total = self.rows if allowed is None else allowed.size
        for lo in range(0, total, BATCH * 4):
            if allowed is None:
                ids = np.arange(lo, min(lo + BATCH * 4, total), dtype=np.int64)
                x = np.asarray(self.vectors[lo:lo + len(ids)], dtype=np.float32)
            else:
                ids = allowed[lo:lo + BATCH * 4]
                x = np.asarray(self.vectors[ids], dtype=np.float32)
            s = x @ q
            s[~np.isfinite(s)] = -np.inf
            best_i, best_s = _top(np.concatenate([best_i, ids]),
                                  np.concatenate([best_s, s]), k)
        keep = np.isfinite(best_s)
        return best_i[keep], best_s[keep]


def _pca_arrays(pca: object) -> tuple[np.ndarray, np.ndarray]:
    faiss = _faiss()

    a = faiss.vector_to_array(pca.A).reshape(pca.d_out, pca.d_in).astype(np.float32)
    b = faiss.vector_to_array(pca.b).astype(np.float32)
    return a, b


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        ids, scores = ids[part], scores[part]
    order = np.lexsort((ids, -scores.astype(np.float64)))
    return ids[order], scores[order]


def _read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise DataError(f"no index at {path} (no {MANIFEST}); build one with "
                        "'mtquery index build DATASET'")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"index manifest {mpath} is unreadable or truncated ({exc}); rebuild "
                        "with 'mtquery index build'") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{mpath} is not an {FORMAT} index manifest; rebuild with "
                        "'mtquery index build'")
    return manifest


def check_fresh(manifest: dict, dataset: Dataset, path: Path) -> None:
    """Refuse an index that was built for other files, or for files changed since."""
    files = manifest["dataset"]["files"]
    want = [str(Path(f).resolve()) for f in dataset.local_files]
    have = [f["path"] for f in files]
    hint = f"rebuild it with 'mtquery index build {dataset.spec}' or use --exact"
    if want != have:
        extra = sorted(set(want) - set(have))
        missing = sorted(set(have) - set(want))
        what = (f"{len(extra)} file(s) not in the index, e.g. {extra[0]}" if extra else
                f"{len(missing)} indexed file(s) not in the dataset, e.g. {missing[0]}"
                if missing else "the files are in a different order")
        raise DataError(f"the index at {path} was built for another dataset "
                        f"({manifest['dataset'].get('spec')}): {what}; {hint}")
    for f in files:
        try:
            st = Path(f["path"]).stat()
        except OSError:
            raise DataError(f"indexed file {f['path']} is gone; {hint}") from None
        if st.st_size != f["size"] or st.st_mtime_ns != f["mtime_ns"]:
            raise DataError(f"the index at {path} is stale: {f['path']} changed after "
                            f"indexing ({f['size']} -> {st.st_size} bytes, mtime changed); "
                            f"{hint}")


def load_index(path: str | Path, dataset: Dataset | None = None) -> AnnIndex:
    """Open an index (IVF in RAM, vectors memory-mapped); with ``dataset``, refuse it unless
    it was built for exactly these files, unchanged."""
    faiss = _faiss()

    path = Path(path)
    manifest = _read_manifest(path)
    if dataset is not None:
        check_fresh(manifest, dataset, path)
    sizes = manifest.get("files", {})
    for name, size in sizes.items():
        f = path / name
        actual = f.stat().st_size if f.is_file() else None
        if actual != size:
            raise DataError(f"index file {f} is {'missing' if actual is None else 'truncated'}"
                            f" ({actual} bytes, expected {size}); rebuild with "
                            "'mtquery index build'")
    try:
        pca = faiss.read_VectorTransform(str(path / "pca.faiss"))
        # memory-mapped: opening costs ms, not a read of every code (0.3 s per 200k rows)
        ivf = faiss.read_index(str(path / "ivf.faiss"), faiss.IO_FLAG_MMAP)
    except RuntimeError as exc:
        raise DataError(f"index at {path} is corrupt ({str(exc).splitlines()[0]}); rebuild "
                        "with 'mtquery index build'") from exc
    faiss.omp_set_num_threads(1)  # single-query search: OpenMP threads only add overhead
    dtype = np.float32 if manifest.get("sidecar_dtype", "float32") == "float32" else np.float16
    vec = np.memmap(path / manifest["sidecar"], dtype=dtype, mode="r",
                    shape=(int(manifest["rows"]), int(manifest["dim"])))
    if ivf.ntotal != manifest["rows"] or ivf.d != manifest["pca_dim"]:
        raise DataError(f"index at {path} does not match its manifest; rebuild it")
    return AnnIndex(path, manifest, pca, ivf, vec)


def find_index(dataset: Dataset) -> Path | None:
    """The default index location of a local dataset, if an index is there."""
    if dataset.remote or not dataset.local_files:
        return None
    try:
        p = default_index_dir(dataset)
    except DataError:
        return None
    return p if (p / MANIFEST).is_file() else None


def index_info(path: str | Path) -> dict:
    path = Path(path)
    m = _read_manifest(path)
    return {
        "path": str(path), "kind": m["kind"], "rows": m["rows"], "dim": m["dim"],
        "nlist": m["nlist"], "pca_dim": m["pca_dim"], "nprobe": m.get("nprobe"),
        "rerank": m["rerank"], "sidecar": m["sidecar"], "files": len(m["dataset"]["files"]),
        "resident_bytes": m.get("resident_bytes"),
        "resident_pct_of_f32": round(100 * m.get("resident_bytes", 0)
                                     / max(1, m.get("float32_vector_bytes", 1)), 1),
        "build_s": m.get("build", {}).get("total_s"), "created": m.get("created"),
        "calibration": m.get("calibration"),
    }


def search_index(index: AnnIndex, query: np.ndarray, k: int,
                 candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, cosine distances = 1 - cosine), nearest first. ``candidates``: a boolean
    mask over all rows or an array of allowed row ids (a filter), or None."""
    allowed = None
    if candidates is not None:
        c = np.asarray(candidates)
        if c.dtype == bool:
            if c.shape != (index.rows,):
                raise DataError(f"candidate mask has {c.shape} entries, the index "
                                f"{index.rows} rows")
            allowed = np.flatnonzero(c)
        else:
            allowed = np.unique(c.astype(np.int64))
            if allowed.size and (allowed[0] < 0 or allowed[-1] >= index.rows):
                raise DataError("candidate row ids outside the index")
    ids, scores = index.search(query, k, allowed=allowed)
    return ids, np.clip(1.0 - scores.astype(np.float64), 0.0, 2.0)
