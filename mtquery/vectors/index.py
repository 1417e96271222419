"""The approximate kNN index at search time: IVF coarse lists of compressed codes, with an
exact rerank from the index's own vector store. Two kinds (``kind`` in the manifest):
``ivf-rabitq``, the default, holds RaBitQ codes (``bits`` per dimension) of the full unit
vectors; ``ivf-sq8``, mtquery 0.1's kind (``index build --kind ivf-sq8``), a PCA rotation to
``pca_dim`` then 8-bit scalar codes.

Layout of an index directory (``<file>.mtindex/`` beside a one-file dataset, ``_mtindex/``
inside a dataset directory, or any ``index_dir``)::

    manifest.json   parameters, calibration, sizes, timings (format mtquery-ann/2)
    *.xxh           XXH3 checksums of every file (mtquery.vectors.integrity; index verify)
    ivf.faiss       IndexIVFRaBitQ(d, nlist) or, ivf-sq8, IndexIVFScalarQuantizer(d_pca,
                    nlist, QT_8bit); L2 on unit vectors
    pca.faiss       ivf-sq8 only: the PCA rotation d -> d_pca (faiss VectorTransform)
    store/          the dataset's VectorStore (unit vectors, result columns, fingerprint)

Resident memory is the IVF index (ivf-rabitq: about d * bits / 8 bytes a row, in RAM;
ivf-sq8: d_pca + 8 bytes a row, memory-mapped); the store is memory-mapped, paged in for the
candidates of a query and shared with the exact scan. Row ids are the store's.

Search: the query's projection probes ``nprobe`` lists; the best ``rerank`` candidates by code
distance are rescored exactly and the top k returned. ``k`` above half the candidate budget
is answered by the exact scan (the index cannot promise those). A filter gives allowed row
ids: few -> exact scan of just those rows; many -> IVF restricted by a bitmap selector with
nprobe raised by the filter's selectivity; too few hits -> exact over the allowed rows.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.io.datasets import Dataset
from mtquery.io.manifests import IndexManifest
from mtquery.query.filters import Filters
from mtquery.query.session import Session
from mtquery.query.vector import QueryVector
from mtquery.vectors import integrity
from mtquery.vectors.store import (
    VectorStore,
    distances,
    load_store,
    result_table,
    top_k,
    unit_query,
    with_skipped,
)

FORMAT = "mtquery-ann/2"
MANIFEST = "manifest.json"
STORE = "store"


def faiss_module():
    """Import faiss with OpenMP threads that sleep rather than spin when idle: on a small,
    shared machine spinning threads made k-means 3x slower (measured under load)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    return faiss


def pca_arrays(pca: object) -> tuple[np.ndarray, np.ndarray]:
    faiss = faiss_module()
    a = faiss.vector_to_array(pca.A).reshape(pca.d_out, pca.d_in).astype(np.float32)
    b = faiss.vector_to_array(pca.b).astype(np.float32)
    return a, b


#: the most candidates one query may rescore; a k needing more is answered exactly
MAX_CANDIDATES = 4096
CALIBRATION_K = 10


@dataclass
class AnnIndex:
    path: Path
    manifest: dict
    pca: object | None  # ivf-sq8 only: the PCA rotation before the coarse codes
    ivf: object
    store: VectorStore

    def __post_init__(self) -> None:
        self._pca_ab = pca_arrays(self.pca) if self.pca is not None else None

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", "ivf-sq8"))

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
    def rerank(self) -> int:
        """Candidates rescored exactly for k = 10 (calibrated, or set at build)."""
        return int(self.manifest.get("rerank", 256))

    @property
    def fallback(self) -> str | None:
        """Why the index does not serve searches by default (calibration could not reach
        the target recall within the latency budget), or None."""
        return (self.manifest.get("calibration") or {}).get("fallback")

    def candidates(self, k: int, rerank: int | None = None) -> int:
        """Candidates to rescore for k: the calibrated depth scaled with k (the ivf-sq8 kind
        keeps its fixed depth, at least 2k)."""
        depth = int(rerank or self.rerank)
        if self.kind == "ivf-sq8":
            return max(depth, 2 * k)
        return max(depth, math.ceil(depth * k / CALIBRATION_K))

    @property
    def max_k(self) -> int:
        """The largest k the index answers itself: its candidates stay within MAX_CANDIDATES."""
        k = 1
        while k < self.rows and self.candidates(k * 2) <= MAX_CANDIDATES:
            k *= 2
        lo, hi = k, min(self.rows, k * 2)
        while lo < hi:  # largest k with candidates(k) <= MAX_CANDIDATES
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.candidates(mid) <= MAX_CANDIDATES else (lo, mid - 1)
        return max(1, lo)

    @property
    def vectors(self) -> np.ndarray:
        return self.store.matrix()

    def project(self, x: np.ndarray) -> np.ndarray:
        """The vectors the coarse lists were built on: PCA projection for ivf-sq8 (numpy:
        faiss' own apply spins OpenMP threads for one row), the unit vectors otherwise."""
        if self._pca_ab is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        a, b = self._pca_ab
        return np.ascontiguousarray(x @ a.T + b, dtype=np.float32)

    def _params(self, nprobe: int, allowed: np.ndarray | None):
        faiss = faiss_module()
        if self.kind == "ivf-rabitq":
            ps = faiss.IVFRaBitQSearchParameters()
            ps.qb = int(self.manifest.get("query_bits", 8))
        else:
            ps = faiss.SearchParametersIVF()
        ps.nprobe = int(min(nprobe, self.nlist))
        if allowed is not None:
            bits = np.zeros(self.rows, dtype=bool)
            bits[allowed] = True
            self._packed = np.packbits(bits, bitorder="little")  # must outlive the search
            ps.sel = faiss.IDSelectorBitmap(self.rows, faiss.swig_ptr(self._packed))
        return ps

    def candidate_lists(self, queries: np.ndarray, depth: int, nprobe: int,
                        allowed: np.ndarray | None = None) -> np.ndarray:
        """(queries, depth) candidate row ids from the codes, best estimate first (-1: none)."""
        _, cand = self.ivf.search(self.project(queries), int(depth),
                                  params=self._params(nprobe, allowed))
        return cand

    def search(self, query: np.ndarray, k: int = 10, allowed: np.ndarray | None = None,
               nprobe: int | None = None, rerank: int | None = None,
               prefilter_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, cosine similarities), best first. ``allowed``: sorted unique row ids the
        results must come from (a filter), or None for all rows."""
        q = unit_query(query, self.dim)
        k = max(1, min(int(k), self.rows))
        depth = self.candidates(k, rerank)
        if depth > MAX_CANDIDATES:  # beyond the candidate budget: exact, never truncated
            return self.exact(q, k, allowed)
        nprobe = int(nprobe or self.manifest.get("nprobe") or 16)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            if allowed.size == 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            limit = prefilter_max if prefilter_max is not None else max(20_000, self.rows // 50)
            if allowed.size <= limit:
                return self.exact(q, k, allowed)
            frac = allowed.size / self.rows
            nprobe = int(min(self.nlist, math.ceil(nprobe * min(1.0 / frac, 32.0))))
            depth = min(MAX_CANDIDATES, 2 * depth)  # the selector thins every list
        cand = self.candidate_lists(q[None, :], depth, nprobe, allowed)[0]
        ids = np.unique(cand[cand >= 0])
        if allowed is not None:
            ids = ids[np.isin(ids, allowed)]
        # gathered rows (checked by their row hashes) x query without BLAS: its threads
        # cost milliseconds on a busy machine for a few hundred rows (measured)
        pos, scores = top_k(np.einsum("ij,j->i", self.store.vectors(ids), q), k, ids)
        if len(pos) < min(k, self.rows if allowed is None else allowed.size):
            return self.exact(q, k, allowed)  # the probed lists held too few: exact
        return ids[pos], scores

    def exact(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by a scan of the store (all rows, or only ``allowed``)."""
        return self.store.search(unit_query(q, self.dim), k, allowed)


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


def find_index(dataset: Dataset) -> Path | None:
    """The default index location of a local dataset, if an index is there."""
    if dataset.remote or not dataset.local_files:
        return None
    try:
        p = default_index_dir(dataset)
    except DataError:
        return None
    return p if (p / MANIFEST).is_file() else None


def read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST
    rebuild = "rebuild with 'mtquery index build'"
    if not mpath.is_file():
        raise DataError(f"no index at {path} (no {MANIFEST}); build one with "
                        "'mtquery index build DATASET'")
    try:
        manifest = json.loads(integrity.read_verified(mpath))  # damage: Damaged, named
    except (OSError, ValueError) as exc:
        raise DataError(f"index manifest {mpath} is unreadable or truncated ({exc}); "
                        f"{rebuild}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{mpath} is not an {FORMAT} index manifest; {rebuild}")
    IndexManifest.from_dict(manifest, mpath)  # fields and their types: one line, rebuild
    return manifest


def check_fresh(store: VectorStore, dataset: Dataset, path: Path) -> None:
    """Refuse an index that was built for other files, or for files changed since."""
    want = [str(Path(f).resolve()) for f in dataset.local_files]
    have = [f["path"] for f in store.fingerprint]
    hint = f"rebuild it with 'mtquery index build {dataset.spec}' or search exactly"
    if want != have:
        extra = sorted(set(want) - set(have))
        missing = sorted(set(have) - set(want))
        what = (f"{len(extra)} file(s) not in the index, e.g. {extra[0]}" if extra else
                f"{len(missing)} indexed file(s) not in the dataset, e.g. {missing[0]}"
                if missing else "the files are in a different order")
        raise DataError(f"the index at {path} was built for another dataset: {what}; {hint}",
                        "exact")
    for f in store.fingerprint:
        try:
            st = Path(f["path"]).stat()
        except OSError:
            raise DataError(f"indexed file {f['path']} is gone; {hint}", "exact") from None
        if st.st_size != f["size"] or st.st_mtime_ns != f["mtime_ns"]:
            raise DataError(f"the index at {path} is stale: {f['path']} changed after "
                            f"indexing ({f['size']} -> {st.st_size} bytes, mtime changed); "
                            f"{hint}", "exact")
    from mtquery.io.roles import roles_of

    roles = roles_of(dataset)  # built reading other columns (--columns): refused
    if (path / MANIFEST).is_file() and read_manifest(path).get("columns") != (
            None if roles.standard else roles.to_dict()):
        raise DataError(f"the index at {path} was built reading other columns; {hint}", "exact")


def load_index(path: str | Path, dataset: Dataset | None = None) -> AnnIndex:
    """Open an index (IVF memory-mapped, store memory-mapped); with ``dataset``, refuse it
    unless it was built for exactly these files, unchanged."""
    faiss = faiss_module()
    path = Path(path)
    manifest = read_manifest(path)
    rebuild = "rebuild with 'mtquery index build'"
    for name, size in manifest.get("files", {}).items():
        f = path / name
        actual = f.stat().st_size if f.is_file() else None
        if actual != size:
            raise DataError(f"index file {f} is {'missing' if actual is None else 'truncated'}"
                            f" ({actual} bytes, expected {size}); {rebuild}")
    store = load_store(path / STORE)
    if store is None or store.n != manifest["rows"] or store.dim != manifest["dim"]:
        raise DataError(f"the vector store of the index at {path} is missing or incomplete; "
                        f"{rebuild}")
    if dataset is not None:
        check_fresh(store, dataset, path)
    for codes in ("pca.faiss", "ivf.faiss"):  # checked whole before faiss parses them
        if (path / codes).is_file() or codes == "ivf.faiss":
            integrity.verify_file(path / codes)
    try:
        pca = (faiss.read_VectorTransform(str(path / "pca.faiss"))
               if (path / "pca.faiss").is_file() else None)
        # ivf-sq8 memory-mapped: opening costs ms, not a read of every code (0.3 s per 200k
        # rows); ivf-rabitq read into RAM: searching mmapped RaBitQ lists was 7x slower
        # (0.96 vs 0.14 ms a query, 20k x 128, benchmarks/ann_bench.py reports "open s")
        flags = faiss.IO_FLAG_MMAP if manifest.get("kind") == "ivf-sq8" else 0
        ivf = faiss.read_index(str(path / "ivf.faiss"), flags)
    except RuntimeError as exc:
        raise DataError(f"index at {path} is corrupt ({str(exc).splitlines()[0]}); "
                        f"{rebuild}") from exc
    faiss.omp_set_num_threads(1)  # single-query search: OpenMP threads only add overhead
    coded = manifest.get("coded_rows", manifest["rows"])  # rows with a direction
    if ivf.ntotal != coded or ivf.d != manifest.get("pca_dim", manifest["dim"]):
        raise DataError(f"index at {path} does not match its manifest; {rebuild}")
    return AnnIndex(path, manifest, pca, ivf, store)


def open_for(session: Session | Dataset, index: str | Path | None = None) -> AnnIndex | None:
    """The dataset's index (``index`` or the default location), checked fresh; None when
    there is none at the default location. The one place a dataset's index is looked up."""
    dataset = session if isinstance(session, Dataset) else session.dataset
    path = Path(index) if index is not None else find_index(dataset)
    if path is None:
        return None
    return load_index(path, dataset)


def fresh_store_of(session: Session) -> VectorStore | None:
    """The vector store of the dataset's index, when a fresh one of the session's dimension
    exists (the exact scan reads it instead of building a cache); None otherwise."""
    path = find_index(session.dataset)
    store = load_store(path / STORE) if path is not None else None
    if store is None or store.dim != session.dim:
        return None
    try:
        check_fresh(store, session.dataset, path)
    except DataError:
        return None  # stale or foreign index: the cache serves the exact scan
    return store


def index_info(path: str | Path) -> dict:
    """Kind, parameters, calibration curve, resident and disk bytes, fallback of an index."""
    path = Path(path)
    m = read_manifest(path)
    checked = integrity.verify_index(path)  # every file against its checksums
    calib = m.get("calibration") or {}
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {
        "path": str(path), "kind": m["kind"], "rows": m["rows"], "dim": m["dim"],
        "nlist": m["nlist"], "bits": m.get("bits"), "pca_dim": m.get("pca_dim"),
        "nprobe": m.get("nprobe"), "rerank": m["rerank"],
        "sidecar": m.get("sidecar_dtype"), "files": len(m.get("dataset", {}).get("files", [])),
        "resident_bytes": m.get("resident_bytes"),
        "resident_pct_of_f32": round(100 * m.get("resident_bytes", 0)
                                     / max(1, m.get("float32_vector_bytes", 1)), 1),
        "disk_bytes": disk,
        "build_s": m.get("build", {}).get("total_s"), "created": m.get("created"),
        "in_fallback": bool(calib.get("fallback")), "fallback": calib.get("fallback"),
        "calibration": calib,
        "verified": {"files": checked["files"], "bytes": checked["bytes"]},
    }


def search_index(index: AnnIndex, query: np.ndarray, k: int,
                 candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, cosine distances), nearest first. ``candidates``: a boolean mask over all
    rows or an array of allowed row ids (a filter), or None."""
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
    return ids, distances(scores)


def index_knn(session: Session, idx: AnnIndex, query: QueryVector, k: int,
              filters: Filters | None = None, include_self: bool = False) -> pa.Table:
    """The same answer as the exact scan (rank, result columns, distance), from the index."""
    from mtquery.vectors.exact import allowed_ids, excluding

    if idx.dim != session.dim:
        raise DataError(f"the index holds {idx.dim}-d vectors, the dataset {session.dim}-d; "
                        "rebuild it")
    exclude = () if include_self else query.exclude_ids
    allowed = allowed_ids(session, idx.store, filters or Filters())

    def fetch(m: int) -> tuple[pa.Table, np.ndarray]:
        ids, scores = idx.search(query.vector, m, allowed=allowed)
        return idx.store.rows(ids), scores

    rows, scores = excluding(fetch, k, exclude, idx.rows)
    skipped = idx.store.count_invalid(allowed)
    return with_skipped(result_table(scores, rows), skipped)
