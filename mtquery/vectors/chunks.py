"""The one streaming pass of an index build (and of an update's new files), in chunks that
survive a kill.

The Parquet files are cut into **units** (a file's row groups, about CHUNK_ROWS rows each).
Before the pass, a bounded sample is read from row groups spread evenly over the dataset: the
k-means training rows and the calibration queries (disjoint). Then every unit is read once
(the embedding column's flat value buffer, with the result columns) while the next one is
read in a thread, and

1. its unit vectors are appended to the store's vector file,
2. its result columns go to ``rows/NNNNN.arrow``,
3. its rows get their lists (:func:`mtquery.vectors.ivf_lists.assign`) and RaBitQ codes,
   saved as ``codes/NNNNN.npz``,
4. the calibration queries' exact top-k is merged with the unit's rows (one matrix product:
   the ground truth costs one batched pass, fused into this one),

and ``progress.json`` records the units done (written by rename, after the unit's files).
A rerun of a killed pass truncates the vector file to the rows recorded and goes on from
the next unit: the result is the same bytes as an uninterrupted pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.io.columns import STANDARD, Roles
from mtquery.vectors.ivf_lists import Coarse, assign, encode
from mtquery.vectors.store import RESULT_COLUMNS, cast_rows, top_k_rows, unit_rows

CHUNK_ROWS = 65_536
SAMPLE_GROUPS = 48
PROGRESS = "progress.json"


@dataclass(frozen=True)
class Unit:
    """Row groups ``groups`` of file ``path``: global rows [first, first + rows), rows
    [file_row, file_row + rows) of the file, read through ``roles`` (mtquery.io.columns)
    in a dataset of the files ``sources``."""

    path: str
    groups: tuple[int, ...]
    first: int
    rows: int
    file_row: int = 0
    roles: Roles = STANDARD
    sources: tuple[str, ...] = ()


def plan_units(fp: Sequence[dict], first: int = 0, chunk_rows: int = CHUNK_ROWS,
               roles: Roles = STANDARD) -> list[Unit]:
    """The units of the files of a fingerprint, in row-id order starting at ``first``."""
    import pyarrow.parquet as pq

    units, off = [], first
    sources = tuple(f["path"] for f in fp)
    for f in fp:
        md = pq.ParquetFile(f["path"]).metadata
        cur: list[int] = []
        rows = in_file = 0
        for g in range(md.num_row_groups):
            r = md.row_group(g).num_rows
            if cur and rows + r > chunk_rows:
                units.append(Unit(f["path"], tuple(cur), off, rows, in_file, roles, sources))
                off += rows
                in_file += rows
                cur, rows = [], 0
            cur.append(g)
            rows += r
        if cur:
            units.append(Unit(f["path"], tuple(cur), off, rows, in_file, roles, sources))
            off += rows
    return units


def read_unit(unit: Unit, columns: bool = True) -> tuple[np.ndarray, pa.Table | None]:
    """(float32 vectors, result columns or None) of a unit."""
    import pyarrow.parquet as pq

    from mtquery.io.standardize import source_columns, standard_rows
    from mtquery.standard.schema import embedding_matrix

    pf = pq.ParquetFile(unit.path)
    vector = unit.roles.vector
    names = list(dict.fromkeys([vector] + (
        source_columns(unit.roles, pf.schema_arrow.names, RESULT_COLUMNS) if columns else [])))
    t = pf.read_row_groups(list(unit.groups), columns=names, use_threads=True)
    if t.num_rows != unit.rows:
        raise DataError(f"{unit.path} changed while it was read; run again")
    x = embedding_matrix(t.column(vector))
    if not columns:
        return x, None
    rows = standard_rows(t.drop_columns([vector]) if unit.roles.standard else t, unit.roles,
                         RESULT_COLUMNS, unit.path, unit.file_row,
                         unit.sources or (unit.path,))
    return x, cast_rows(rows)


def read_sample(units: Sequence[Unit], train: int, queries: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train ids, train unit rows, query ids, query unit rows): random rows of row groups
    spread evenly over the dataset (at least SAMPLE_GROUPS of them, or all; about twice the
    rows wanted are read); invalid rows left out; queries disjoint from the training rows."""
    import pyarrow.parquet as pq

    from mtquery.standard.schema import embedding_matrix

    rng = np.random.default_rng(seed)
    groups = [(u, g) for u in units for g in u.groups]
    if not groups:
        return (np.empty(0, np.int64), np.empty((0, 0), np.float32), np.empty(0, np.int64),
                np.empty((0, 0), np.float32))
    total = sum(u.rows for u in units)
    want = train + queries
    per_group = total / len(groups)
    count = int(min(len(groups), max(SAMPLE_GROUPS, np.ceil(2 * want / per_group))))
    pick = np.unique(np.linspace(0, len(groups) - 1, count).round().astype(int))
    ids, vecs = [], []
    for i in pick:
        u, g = groups[i]
        pf = pq.ParquetFile(u.path)
        first = u.first + sum(pf.metadata.row_group(h).num_rows for h in u.groups if h < g)
        x = unit_rows(embedding_matrix(pf.read_row_group(g, columns=[u.roles.vector])
                                       .column(0)))
        take = min(len(x), int(np.ceil(want * len(x) / max(1, count * per_group) * 1.1)))
        sel = np.sort(rng.choice(len(x), take, replace=False))
        sel = sel[np.isfinite(x[sel, 0])]
        ids.append(first + sel)
        vecs.append(x[sel])
    all_ids, all_x = np.concatenate(ids), np.concatenate(vecs)
    order = rng.permutation(len(all_ids))
    n_q = min(queries, len(order) // 2)
    q_pos = np.sort(order[:n_q])
    t_pos = np.sort(order[n_q:n_q + train])
    return (all_ids[t_pos].astype(np.int64), all_x[t_pos], all_ids[q_pos].astype(np.int64),
            all_x[q_pos])


@dataclass
class Truth:
    """Running exact top-k (ids, similarities) of the calibration queries."""

    queries: np.ndarray  # (Q, d) unit rows
    k: int
    ids: np.ndarray | None = None
    scores: np.ndarray | None = None

    def merge(self, x: np.ndarray, first: int) -> None:
        if not len(self.queries) or not len(x):
            return
        s = self.queries @ x.T  # NaN rows -> NaN scores: ranked last by top_k_rows
        idx = np.broadcast_to(np.arange(first, first + len(x), dtype=np.int64), s.shape)
        if self.ids is not None:
            s = np.concatenate([self.scores, s], 1)
            idx = np.concatenate([self.ids, idx], 1)
        cols, self.scores = top_k_rows(s, self.k)
        self.ids = np.take_along_axis(idx, cols, 1)


def normalise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``store.unit_rows`` from the squared norms (one product, no per-row checks of the
    whole matrix): (unit rows, valid mask); zero or non-finite rows become NaN rows."""
    x = np.ascontiguousarray(x, dtype=np.float32)  # may be Arrow's read-only buffer
    sq = np.einsum("ij,ij->i", x, x)
    valid = np.isfinite(sq) & (sq > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = x * (1.0 / np.sqrt(sq))[:, None]
    x[~valid] = np.nan
    return x, valid


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def run_pass(units: Sequence[Unit], work: Path, vector_file: Path, dtype: np.dtype,
             coarse: Coarse, ivf, truth: Truth | None,
             on_unit: Callable[[Unit, float], None] | None = None) -> int:
    """Process ``units`` (resuming after the last recorded one); returns rows written."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "rows").mkdir(exist_ok=True)
    (work / "codes").mkdir(exist_ok=True)
    state = {"units": 0, "rows": 0}
    if (work / PROGRESS).is_file():
        state = json.loads((work / PROGRESS).read_text(encoding="utf-8"))
        if truth is not None and (work / "truth.npz").is_file():
            with np.load(work / "truth.npz") as z:
                truth.ids, truth.scores = z["ids"], z["scores"]
    itemsize = np.dtype(dtype).itemsize
    dim = coarse.fine.shape[1]
    have = vector_file.stat().st_size if vector_file.is_file() else 0
    if have < int(state["rows"]) * dim * itemsize:  # the rows recorded are not there: redo
        state = {"units": 0, "rows": 0}
        if truth is not None:
            truth.ids = truth.scores = None
    done = int(state["units"])
    with open(vector_file, "ab") as fh:
        fh.truncate(int(state["rows"]) * dim * itemsize)  # drop a killed unit's rows
    todo = list(units[done:])
    with ThreadPoolExecutor(1) as ex, open(vector_file, "ab") as fh:
        nxt = ex.submit(read_unit, todo[0]) if todo else None
        for i, u in enumerate(todo, start=done):
            x, rows = nxt.result()
            nxt = ex.submit(read_unit, todo[i - done + 1]) if i - done + 1 < len(todo) \
                else None
            if x.shape[1] != dim:
                raise DataError(f"mixed embedding dimensions: {x.shape[1]} in {u.path}, "
                                f"{dim} elsewhere")
            x, valid = normalise(x)
            fh.write(memoryview(np.ascontiguousarray(x.astype(dtype, copy=False))))
            bad = np.flatnonzero(~valid)
            ok = np.flatnonzero(valid)
            lists = assign(coarse, x[ok])
            codes = encode(ivf, x[ok], lists)
            with pa.OSFile(str(work / "rows" / f"{i:05d}.arrow"), "wb") as sink, \
                    pa.ipc.new_file(sink, rows.schema) as w:
                w.write_table(rows)
            np.savez(work / "codes" / f"{i:05d}.npz", lists=lists.astype(np.int32),
                     ids=(u.first + ok).astype(np.int64), codes=codes,
                     invalid=(u.first + bad).astype(np.int64))
            if truth is not None:
                truth.merge(x, u.first)
                np.savez(work / "truth.tmp.npz", ids=truth.ids, scores=truth.scores)
                os.replace(work / "truth.tmp.npz", work / "truth.npz")
            fh.flush()
            state = {"units": i + 1, "rows": int(state["rows"]) + len(x)}
            _atomic_json(work / PROGRESS, state)
            if on_unit is not None:
                on_unit(u, 0.0)
    return int(state["rows"])


def chunk_files(work: Path, n_units: int) -> list[Path]:
    return [work / "codes" / f"{i:05d}.npz" for i in range(n_units)]


def row_files(work: Path, n_units: int) -> list[Path]:
    return [work / "rows" / f"{i:05d}.arrow" for i in range(n_units)]
