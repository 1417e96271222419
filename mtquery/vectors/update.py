"""``mtquery index update``: grow an index in place when files are added to (or removed from)
its dataset, without training or encoding the rows it already holds.

A file whose resolved path, size, mtime and row count are unchanged is **kept**: its vectors
are copied (kernel-side, ``copy_file_range``) and its codes stay in their lists with their
row ids renumbered; a file that is gone (or changed) is **dropped**: its rows leave the lists
and the store; a new (or changed) file is **added** by the build's own streaming pass
(:func:`mtquery.vectors.chunks.run_pass`: store rows, result columns, codes in the existing
lists). Row ids stay "files in dataset order". The calibration is redone on fresh queries
against ground truth from one batched pass over the new store. The new index is written
beside the old one and renamed into place, so a killed update leaves the old index intact.

The lists were trained on the old rows: when the new rows make them uneven (the imbalance
factor grows past REBUILD_DRIFT x the build's) or the rows outgrow the list count (nlist
below a quarter of what a build would choose), one line suggests a full rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.staging import publish
from mtquery.progress import ProgressCallback, emit
from mtquery.vectors import integrity, rowsfile
from mtquery.vectors.build import (
    BuildParams,
    K,
    lists_summary,
    locked,
    nlist_for,
    partial_dir,
    write_store_meta,
)
from mtquery.vectors.calibrate import QUERIES, calibrate, exact_neighbours
from mtquery.vectors.chunks import Truth, chunk_files, plan_units, row_files, run_pass
from mtquery.vectors.index import (
    MANIFEST,
    STORE,
    AnnIndex,
    default_index_dir,
    faiss_module,
    load_index,
)
from mtquery.vectors.ivf_lists import Coarse, add_codes, remap_ids, remove_rows
from mtquery.vectors.store import DTYPES, RESULT_SCHEMA, ROWS_BATCH, RowMap, fingerprint

#: suggest a rebuild when the lists' imbalance factor passes this multiple of the build's
REBUILD_DRIFT = 1.5


def _same(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in ("path", "size", "mtime_ns", "rows"))


def plan_update(old_fp: list[dict], new_fp: list[dict]) -> tuple[list, list, list]:
    """(kept: (new index, old index) pairs, added new indexes, dropped old indexes)."""
    by_path = {f["path"]: i for i, f in enumerate(old_fp)}
    kept, added = [], []
    for j, f in enumerate(new_fp):
        i = by_path.get(f["path"])
        if i is not None and _same(old_fp[i], f):
            kept.append((j, i))
        else:
            added.append(j)
    kept_old = {i for _, i in kept}
    dropped = [i for i in range(len(old_fp)) if i not in kept_old]
    return kept, added, dropped


def _copy_range(src: Path, dst_fh, offset: int, count: int) -> None:
    with open(src, "rb") as fh:
        while count > 0:
            done = os.copy_file_range(fh.fileno(), dst_fh.fileno(), count, offset)
            if done <= 0:
                raise DataError(f"could not copy {src}; run again")
            offset += done
            count -= done


def update_index(dataset: Dataset | str, index_dir: str | Path | None = None,
                 progress: ProgressCallback | None = None) -> dict:
    """Bring the index of ``dataset`` up to date with its files; returns a summary (rows
    kept, added, dropped, calibration, whether a rebuild is suggested)."""
    ds = resolve(dataset)
    if ds.remote or not ds.local_files:
        raise DataError("an index is updated over local files")
    path = Path(index_dir) if index_dir else default_index_dir(ds)
    old = load_index(path)
    if old.kind != "ivf-rabitq":
        raise DataError(f"the index at {path} is of kind {old.kind}; only ivf-rabitq "
                        f"indexes grow in place: rebuild with 'mtquery index build'")
    old_fp = list(old.store.fingerprint)
    new_fp = fingerprint(ds.local_files)
    kept, added, dropped = plan_update(old_fp, new_fp)
    summary = {"path": str(path), "kept_files": len(kept), "added_files": len(added),
               "dropped_files": len(dropped), "rows": sum(int(f["rows"]) for f in new_fp)}
    if not added and not dropped and [j for j, _ in kept] == [i for _, i in kept]:
        summary.update(status="up to date", rebuild_suggested=None)
        return summary
    if not sum(int(f["rows"]) for f in new_fp):
        raise DataError("the dataset has no rows left to index")
    part = partial_dir(path)
    with locked(part):
        for child in part.iterdir():  # an update starts over (it re-reads only new files)
            if child.name != "lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        manifest = _update(part, path, old, ds, old_fp, new_fp, kept, added, dropped,
                           progress, summary)
        publish(part / "index", path, on_exists="replace")
    shutil.rmtree(part, ignore_errors=True)
    emit(progress, "index", message=f"index updated: {summary['kept_files']} file(s) kept, "
         f"{summary['added_files']} added, {summary['dropped_files']} dropped; nprobe "
         f"{manifest['nprobe']}, rerank {manifest['rerank']}")
    if summary["rebuild_suggested"]:
        emit(progress, "index", message=summary["rebuild_suggested"])
    return summary


def _update(part: Path, path: Path, old: AnnIndex, ds: Dataset, old_fp: list[dict],
            new_fp: list[dict], kept: list, added: list, dropped: list,
            progress: ProgressCallback | None, summary: dict) -> dict:
    faiss = faiss_module()
    t_start = time.perf_counter()
    m = dict(old.manifest)
    work, tmp = part / "work", part / "index"
    (tmp / STORE).mkdir(parents=True)
    old_map, new_map = RowMap.from_fingerprint(old_fp), RowMap.from_fingerprint(new_fp)
    dim, dtype = old.dim, old.store.dtype
    np_dtype, vec_name = DTYPES[dtype]
    itemsize = np.dtype(np_dtype).itemsize
    ivf = old.ivf
    # 1. rows of dropped files leave the lists; kept rows get their new ids
    for i in dropped:
        remove_rows(ivf, old_map.offsets[i], old_map.offsets[i + 1])
    mapping = np.full(old.rows, -1, np.int64)
    for j, i in kept:
        lo, hi = old_map.offsets[i], old_map.offsets[i + 1]
        mapping[lo:hi] = np.arange(lo, hi) - lo + new_map.offsets[j]
    remap_ids(ivf, mapping)
    # 2. the new files through the build's pass (codes in the existing lists)
    if (path / "coarse.npz").is_file():
        coarse = Coarse.load(path / "coarse.npz")
    else:  # built before two-level lists: assign to the nearest of all lists
        cent = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        coarse = Coarse(cent, cent)
    from dataclasses import replace

    from mtquery.io.roles import roles_of

    units = plan_units([new_fp[j] for j in added], roles=roles_of(ds))
    starts = {new_fp[j]["path"]: int(new_map.offsets[j]) for j in added}
    every = tuple(f["path"] for f in new_fp)
    units = [replace(u, first=starts[u.path] + u.first - _file_first(units, u.path),
                     sources=every) for u in units]
    run_pass(units, work, work / "new.vectors", np.dtype(np_dtype), coarse, ivf, None,
             on_unit=lambda u, _: emit(progress, "indexing new files", u.rows,
                                       total=sum(x.rows for x in units), unit="rows"))
    invalid = [mapping[old.store.invalid_ids()]]
    for f in chunk_files(work, len(units)):
        with np.load(f) as z:
            add_codes(ivf, z["lists"].astype(np.int64), z["ids"], z["codes"])
            invalid.append(z["invalid"])
    bad = np.concatenate(invalid)
    bad = np.sort(bad[bad >= 0])
    # 3. the store in dataset order: kept ranges copied, new rows from the pass
    new_pos = {}
    off = 0
    for u in units:
        new_pos.setdefault(u.path, off)
        off += u.rows
    old_of = {j: i for j, i in kept}
    with open(tmp / STORE / vec_name, "wb") as fh:
        for j, f in enumerate(new_fp):
            rows = int(f["rows"]) * dim * itemsize
            if j in old_of:
                _copy_range(old.store.vector_file, fh, int(old_map.offsets[old_of[j]]) *
                            dim * itemsize, rows)
            else:
                _copy_range(work / "new.vectors", fh, new_pos[f["path"]] * dim * itemsize,
                            rows)

    def tables():
        unit_files = row_files(work, len(units))
        for j, f in enumerate(new_fp):
            if j in old_of:
                lo = int(old_map.offsets[old_of[j]])
                for a in range(lo, lo + int(f["rows"]), 65_536):
                    yield old.store.rows(np.arange(a, min(lo + int(f["rows"]), a + 65_536)))
            else:
                for u, uf in zip(units, unit_files, strict=True):
                    if u.path == f["path"]:
                        with pa.memory_map(str(uf)) as src:
                            yield pa.ipc.open_file(src).read_all()

    rowsfile.write_batches(tables(), tmp / STORE / "rows.arrow", RESULT_SCHEMA, ROWS_BATCH)
    store = write_store_meta(tmp / STORE, new_fp, dim, dtype, bad)
    coarse.save(tmp / "coarse.npz")
    faiss.write_index(ivf, str(tmp / "ivf.faiss"))
    n = store.n
    m.update(rows=n, coded_rows=int(ivf.ntotal), zero_or_invalid_vectors=int(len(bad)),
             dataset={"spec": ds.spec, "files": new_fp}, lists=lists_summary(ivf))
    m.setdefault("updates", []).append({
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kept": len(kept),
        "added": len(added), "dropped": len(dropped), "rows": n})
    # 4. calibration on fresh queries, truth from one batched pass over the new store
    rng = np.random.default_rng(len(m["updates"]))
    ok = np.setdiff1d(np.arange(n), bad)
    qids = np.sort(rng.choice(ok, min(QUERIES, len(ok)), replace=False))
    qx = store.vectors(qids)
    truth = Truth(qx, min(K, n))
    truth.ids = exact_neighbours(store.matrix(), qx, truth.k)
    faiss.omp_set_num_threads(1)
    idx = AnnIndex(tmp, m, None, ivf, store)
    p = BuildParams()
    before = m.get("calibration") or {}  # the build's target and latency budget
    calib = calibrate(idx, qx, truth.ids, target=before.get("target_recall", p.target_recall),
                      budget=before.get("latency_budget", p.latency_budget))
    m.update(nprobe=calib["nprobe"], rerank=calib["rerank"], calibration=calib)
    m["files"] = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())
                  if f.suffix == ".faiss"}
    m["resident_bytes"] = sum(m["files"].values())
    m["float32_vector_bytes"] = n * dim * 4
    m["updates"][-1]["seconds"] = round(time.perf_counter() - t_start, 2)
    built = (old.manifest.get("lists_at_build") or old.manifest.get("lists") or {})
    m["lists_at_build"] = built
    summary.update(status="updated", imbalance=m["lists"]["imbalance"],
                   calibration={k: calib.get(k) for k in ("nprobe", "rerank", "recall",
                                                          "latency_ms", "fallback")},
                   rebuild_suggested=_drift(m, built))
    (tmp / MANIFEST).write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    integrity.seal(tmp)
    return m


def _file_first(units: list, path: str) -> int:
    return min(u.first for u in units if u.path == path)


def _drift(m: dict, built: dict) -> str | None:
    """One line suggesting a rebuild when the lists drifted, else None."""
    base = float(built.get("imbalance") or 1.0)
    now = float(m["lists"]["imbalance"])
    if now > REBUILD_DRIFT * base:
        return (f"the lists are uneven after the update (imbalance {now:.2f}, {base:.2f} when "
                f"built; over {REBUILD_DRIFT}x): a full 'mtquery index build' restores speed")
    if nlist_for(int(m["rows"])) >= 4 * int(m["nlist"]):
        return (f"{m['rows']:,} rows in {m['nlist']} lists (a build would use "
                f"{nlist_for(int(m['rows']))}): a full 'mtquery index build' restores speed")
    return None
