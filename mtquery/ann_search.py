"""kNN through the approximate index: filters -> allowed row ids (DuckDB, pruned by the bbox
covering column), index search with exact rerank, result rows read back by row group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.engine import Session
from mtquery.errors import DataError
from mtquery.query import RESULT_COLUMNS, Filters, filtered_locations

RESULT_TYPES = {"unique_id": pa.string(), "grid_cell": pa.string(), "timestamp": pa.string(),
                "product_id": pa.string(), "centre_lat": pa.float64(),
                "centre_lon": pa.float64()}


def open_for(session: Session, index: str | Path | None = None):
    """The dataset's index (``index`` or the default location), checked fresh; None when
    there is none at the default location."""
    from mtquery.ann import find_index, load_index

    path = Path(index) if index is not None else find_index(session.dataset)
    if path is None:
        return None
    return load_index(path, session.dataset)


def allowed_rows(session: Session, idx, filters: Filters) -> np.ndarray | None:
    """Sorted global row ids of the rows passing ``filters`` (None: no filter)."""
    if filters.empty:
        return None
    table = filtered_locations(session, filters)
    if table.num_rows == 0:
        return np.empty(0, np.int64)
    offsets = idx.file_offsets()
    by_name = {}
    for f in session.dataset.local_files:
        by_name[str(f)] = offsets[str(Path(f).resolve())]
    files = table.column("source_file").to_numpy(zero_copy_only=False)
    rows = table.column("source_row").to_numpy().astype(np.int64)
    names, inv = np.unique(files, return_inverse=True)
    base = np.array([by_name.get(n, offsets.get(str(Path(n).resolve()), -1)) for n in names],
                    dtype=np.int64)
    if (base < 0).any():
        raise DataError("the index does not cover every file of the dataset; rebuild it")
    return np.unique(base[inv] + rows)


class RowReader:
    """Result columns of given global row ids, read by row group with pyarrow."""

    def __init__(self, idx) -> None:
        import pyarrow.parquet as pq

        self.files = [f["path"] for f in idx.files]
        self.starts = np.cumsum([0] + [f["rows"] for f in idx.files])
        self._pf: dict[int, tuple[object, np.ndarray]] = {}
        self._pq = pq

    def _file(self, i: int):
        if i not in self._pf:
            pf = self._pq.ParquetFile(self.files[i])
            md = pf.metadata
            rg = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])
            self._pf[i] = (pf, rg)
        return self._pf[i]

    def read(self, rowids: np.ndarray) -> pa.Table:
        from mtquery.schema import COLUMNS

        cols = [c for c in RESULT_COLUMNS if c in COLUMNS]
        pieces: dict[tuple[int, int], dict] = {}
        fi = np.searchsorted(self.starts, rowids, side="right") - 1
        for pos, (r, f) in enumerate(zip(rowids.tolist(), fi.tolist(), strict=True)):
            pf, rg = self._file(f)
            local = r - int(self.starts[f])
            g = int(np.searchsorted(rg, local, side="right") - 1)
            pieces.setdefault((f, g), {"pf": pf, "rows": [], "pos": []})
            pieces[(f, g)]["rows"].append(local - int(rg[g]))
            pieces[(f, g)]["pos"].append(pos)
        parts, order = [], []
        for (_f, g), p in pieces.items():
            t = p["pf"].read_row_group(g, columns=cols)
            parts.append(t.take(pa.array(p["rows"])))
            order += p["pos"]
        if not parts:
            return pa.table({c: pa.array([], RESULT_TYPES[c]) for c in RESULT_COLUMNS})
        table = pa.concat_tables([_cast(t) for t in parts])
        return table.take(pa.array(np.argsort(np.asarray(order))))


def _cast(t: pa.Table) -> pa.Table:
    return pa.table({c: t.column(c).cast(RESULT_TYPES[c]) for c in RESULT_COLUMNS})


def indexed_knn(session: Session, query, k: int, filters: Filters | None = None,
                include_self: bool = False, idx=None) -> pa.Table:
    """Same result as ``knn.exact_knn`` (rank, RESULT_COLUMNS, distance), from the index."""
    filters = filters or Filters()
    if idx.dim != session.dim:
        raise DataError(f"the index holds {idx.dim}-d vectors, the dataset {session.dim}-d; "
                        "rebuild it")
    allowed = allowed_rows(session, idx, filters)
    exclude = query.unique_id is not None and not include_self
    ids, scores = idx.search(query.vector, k + (1 if exclude else 0), allowed=allowed)
    rows = RowReader(idx).read(ids)
    if exclude and rows.num_rows:
        keep = np.asarray(rows.column("unique_id").to_pylist(), dtype=object) != query.unique_id
        rows = rows.filter(pa.array(keep))
        scores = scores[keep]
    rows, scores = rows.slice(0, k), scores[:k]
    dist = np.clip(1.0 - scores.astype(np.float64), 0.0, 2.0)
    out = rows.add_column(0, "rank", pa.array(np.arange(1, len(dist) + 1), pa.int64()))
    return out.append_column("distance", pa.array(dist, pa.float64()))
