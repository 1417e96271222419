"""Labelled embeddings: join a label file to a dataset's fragments (``mtquery.eval.labels``),
fetch their vectors, and describe the dataset for the results file.

Multi-label: a list-valued label column, or several label rows per fragment; with
``multi_label="auto"`` the task is multi-label when some fragment ends up with more than one
distinct label (a list column holding one label per row stays single-label).
``multi_label="no"`` keeps one label per fragment: the one whose
polygon covers most of the fragment (spatial), else the most frequent, ties to the smallest name.

Rows come back ordered by (source file, row in file), so the order never depends on the label
file's order or on DuckDB's threads.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.errors import DataError, UsageError
from mtquery.eval.labels import LABEL_TABLE, join_sql, load_label_table, resolve_labels
from mtquery.query.session import Session, describe_error
from mtquery.standard.schema import embedding_matrix
from mtquery.vectors import store

MULTI = ("auto", "yes", "no")


@dataclass
class LabelledSet:
    """Vectors with their labels and where they are. ``labels[i]`` is a tuple of class names
    (one name for single-label tasks)."""

    X: np.ndarray
    labels: list[tuple[str, ...]]
    classes: list[str]
    multi_label: bool
    unique_id: np.ndarray
    grid_cell: np.ndarray
    timestamp: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    info: dict = field(default_factory=dict)
    source_file: np.ndarray | None = None  # where each row lives (for the ANN index's row ids)
    source_row: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def y_single(self) -> np.ndarray:
        """Class index per row (single-label tasks)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[t[0]] for t in self.labels], dtype=np.int64)

    def y_multi(self) -> np.ndarray:
        """(n, n_classes) 0/1 indicator matrix."""
        index = {c: i for i, c in enumerate(self.classes)}
        Y = np.zeros((len(self.labels), len(self.classes)), dtype=np.int8)
        for r, t in enumerate(self.labels):
            for c in t:
                Y[r, index[c]] = 1
        return Y

    def subset(self, idx: np.ndarray) -> LabelledSet:
        idx = np.asarray(idx)
        labels = [self.labels[i] for i in idx]
        classes = sorted({c for t in labels for c in t})
        return LabelledSet(self.X[idx], labels, classes, self.multi_label, self.unique_id[idx],
                           self.grid_cell[idx], self.timestamp[idx], self.lat[idx], self.lon[idx],
                           dict(self.info),
                           None if self.source_file is None else self.source_file[idx],
                           None if self.source_row is None else self.source_row[idx])


def sha256_lines(values) -> str:
    h = hashlib.sha256()
    for v in values:
        h.update(str(v).encode())
        h.update(b"\n")
    return h.hexdigest()


def read_vectors(files: np.ndarray, rows: np.ndarray, session: Session) -> np.ndarray:
    """Embedding vectors of (file, row) pairs, read with pyarrow from the row groups holding
    them (local files), in the given order."""
    out: np.ndarray | None = None
    n = len(rows)
    vector = session.shape.roles.vector  # a file of another shape: its vector column
    order_files = list(dict.fromkeys(files.tolist()))
    for fname in order_files:
        sel = np.nonzero(files == fname)[0]
        want = rows[sel].astype(np.int64)
        pf = pq.ParquetFile(fname)
        rg_rows = np.array([pf.metadata.row_group(i).num_rows
                            for i in range(pf.metadata.num_row_groups)], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(rg_rows)])
        rgs = np.unique(np.searchsorted(starts, want, side="right") - 1)
        if len(rgs) == len(rg_rows):
            tbl = pf.read(columns=[vector])
            local = want
        else:
            tbl = pf.read_row_groups(rgs.tolist(), columns=[vector])
            kept = np.cumsum(rg_rows[rgs])
            new_start = np.concatenate([[0], kept[:-1]])
            pos = np.searchsorted(starts, want, side="right") - 1
            remap = dict(zip(rgs.tolist(), new_start.tolist(), strict=True))
            local = np.array([remap[p] for p in pos], dtype=np.int64) + (want - starts[pos])
        M = embedding_matrix(tbl.column(vector))
        if len(order_files) == 1 and len(local) == len(M) and (
                local == np.arange(len(M))).all():
            out = M  # the whole file, in order: no copy
            break
        if out is None:
            out = np.empty((n, M.shape[1]), dtype=np.float32)
        elif M.shape[1] != out.shape[1]:
            raise DataError(f"mixed embedding dimensions: {out.shape[1]} and {M.shape[1]} "
                            f"({fname})")
        out[sel] = M[local]
    if out is None:
        return np.zeros((0, session.dim), dtype=np.float32)
    return out


def vectors_by_id(con: duckdb.DuckDBPyConnection, ids: list[str]) -> np.ndarray:
    keys = pa.table({"unique_id": pa.array(ids, pa.string()),
                     "ord": pa.array(np.arange(len(ids)), pa.int64())})
    con.register("mt_eval_keys", keys)
    try:
        tbl = con.execute(
            "SELECT k.ord, e.embedding FROM mt_eval_keys k JOIN embeddings e USING (unique_id) "
            "ORDER BY k.ord").to_arrow_table()
    finally:
        con.unregister("mt_eval_keys")
    return embedding_matrix(tbl.column("embedding"))


def dataset_fingerprint(session: Session) -> dict:
    """What was evaluated: the dataset spec and, for local files, ``mtquery.vectors.store``'s
    fingerprint (resolved path, size, mtime_ns, rows per file) and their total rows."""
    files = store.fingerprint(session.dataset.local_files)
    fp = {"spec": session.dataset.spec, "sources": list(session.dataset.sources),
          "remote": session.dataset.remote, "dim": session.dim, "files": files}
    if files:
        fp["total_rows"] = sum(f["rows"] for f in files)
    return fp


def dataset_models(session: Session) -> list[str]:
    """Model names from the dataset's manifest: a catalog entry, Parquet key-value metadata
    (``mtquery``/``manifest``/``model`` keys holding JSON or text), or a ``manifest.json``
    beside the files."""
    names: list[str] = []
    if session.dataset.entry is not None and session.dataset.entry.model:
        names.append(session.dataset.entry.model)

    def take(obj) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in ("model", "models") and isinstance(v, dict) and isinstance(
                        v.get("name"), str):
                    names.append(v["name"])
                elif k in ("model", "model_name", "models") and isinstance(v, (str, list)):
                    for m in [v] if isinstance(v, str) else v:
                        if isinstance(m, str):
                            names.append(m)
                        else:
                            take(m)
                elif isinstance(v, (dict, list)):
                    take(v)
        elif isinstance(obj, list):
            for v in obj:
                take(v)

    seen_dirs = set()
    for f in session.dataset.local_files[:64]:
        try:
            meta = pq.read_schema(f).metadata or {}
        except Exception:  # noqa: BLE001
            meta = {}
        for k, v in meta.items():
            key = k.decode(errors="replace").lower()
            if key in ("geo", "arrow:schema", "pandas"):
                continue
            if "model" in key or "mtquery" in key or "manifest" in key:
                text = v.decode(errors="replace")
                try:
                    take(json.loads(text))
                except ValueError:
                    if "model" in key:
                        names.append(text)
        d = Path(f).parent
        if d not in seen_dirs:
            seen_dirs.add(d)
            for cand in ("manifest.json", f"{Path(f).stem}.manifest.json"):
                p = d / cand
                if p.is_file():
                    try:
                        take(json.loads(p.read_text()))
                    except (OSError, ValueError):
                        pass
    return list(dict.fromkeys(names))


def load_labelled(session: Session, labels_path: str | Path, *, label_col: str | None = None,
                  join: str = "unique_id", multi_label: str = "auto",
                  window_days: int | None = None, start: str | None = None,
                  end: str | None = None) -> LabelledSet:
    """Join a label file to the session's fragments and fetch their vectors; ``start`` /
    ``end`` (dates, inclusive) bound the fragments' acquisition time."""
    if multi_label not in MULTI:
        raise UsageError(f"multi_label must be one of {', '.join(MULTI)}", "multi_label")
    con = session.con
    info = load_label_table(con, labels_path, label_col, join)
    has_date = join == "grid_cell" and "date" in [
        r[0] for r in con.execute(f"DESCRIBE {LABEL_TABLE}").fetchall()]
    sql, params = join_sql(join, has_date, window_days, start, end,
                            area=(join == "spatial" and multi_label == "no"))
    t0 = time.perf_counter()
    try:
        tbl = con.execute(sql, params).to_arrow_table()
    except duckdb.Error as exc:
        raise DataError(f"cannot join labels to the dataset: {describe_error(exc)}") from exc
    if tbl.num_rows == 0:
        raise DataError(f"the labels in {labels_path} match no fragment of {session.dataset.spec} "
                        f"(join by {join})")
    d = tbl.to_pydict()
    labels: list[tuple[str, ...]] = []
    conflicts = 0
    for labs, ws in zip(d["labels"], d["weights"], strict=True):
        t, conflict = resolve_labels(labs, ws, multi_label)
        labels.append(t)
        conflicts += conflict
    is_multi = multi_label == "yes" or (multi_label == "auto" and any(len(t) > 1
                                                                      for t in labels))
    if not is_multi and any(len(t) > 1 for t in labels):
        raise DataError("internal: several labels for a fragment in single-label mode")
    files = np.array(d["source_file"], dtype=object)
    rows = np.array(d["source_row"], dtype=np.int64)
    ids = np.array(d["unique_id"], dtype=object)
    t_join = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = {str(f) for f in session.dataset.local_files}
    if local and all(f in local for f in set(files.tolist())):
        X = read_vectors(files, rows, session)
    else:
        X = vectors_by_id(con, ids.tolist())
    check_vectors(X, ids)
    t_read = time.perf_counter() - t0
    classes = sorted({c for t in labels for c in t})
    n_label_keys = con.execute(f"SELECT count(*) FROM {LABEL_TABLE}").fetchone()[0]
    info.update({"matched_fragments": len(labels), "label_rows_loaded": int(n_label_keys),
                 "ambiguous_resolved": int(conflicts), "multi_label": bool(is_multi)})
    info["_timings"] = {"join_labels_s": t_join, "read_vectors_s": t_read}
    if window_days is not None:
        info["window_days"] = int(window_days)
    if start or end:  # the results files' keys since mtquery-eval/1
        info["date_from"], info["date_to"] = start, end
    return LabelledSet(X=X, labels=labels, classes=classes, multi_label=bool(is_multi),
                       unique_id=ids, grid_cell=np.array(d["grid_cell"], dtype=object),
                       timestamp=np.array(d["timestamp"], dtype=object),
                       lat=np.array(d["lat"], dtype=np.float64),
                       lon=np.array(d["lon"], dtype=np.float64), info=info,
                       source_file=files, source_row=rows)


def check_vectors(X: np.ndarray, ids) -> None:
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        first = np.nonzero(bad)[0][0]
        raise DataError(f"{int(bad.sum())} embedding vector(s) hold NaN or infinite values "
                        f"(first: unique_id {ids[first]})")
    zero = ~(np.abs(X) > 0).any(axis=1) if len(X) else np.zeros(0, bool)
    if zero.any():
        first = np.nonzero(zero)[0][0]
        raise DataError(f"{int(zero.sum())} embedding vector(s) are all zeros "
                        f"(first: unique_id {ids[first]})")
