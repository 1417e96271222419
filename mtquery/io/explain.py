"""``optimize --explain``: how a place / time search prunes a dataset's row groups, with
DuckDB's EXPLAIN ANALYZE of the query and its wall time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

from mtquery.io.datasets import Dataset


def row_groups_kept(files: Sequence[Path], bbox: Sequence[float] | None) -> tuple[int, int]:
    """(row groups whose bbox / centre statistics may intersect ``bbox``, all row groups)."""
    import pyarrow.parquet as pq

    kept = total = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        names = [md.schema.column(i).path for i in range(md.num_columns)]
        for g in range(md.num_row_groups):
            total += 1
            if bbox is None:
                kept += 1
                continue
            rg = md.row_group(g)
            stats = {}
            for i, name in enumerate(names):
                st = rg.column(i).statistics
                if st is not None and st.has_min_max:
                    stats[name] = (st.min, st.max)
            if _may_hit(stats, bbox):
                kept += 1
    return kept, total


def _may_hit(stats: dict, b: Sequence[float]) -> bool:
    min_lon, min_lat, max_lon, max_lat = b
    if "bbox.xmin" in stats:
        return not (stats["bbox.xmin"][0] > max_lon or stats["bbox.xmax"][1] < min_lon
                    or stats["bbox.ymin"][0] > max_lat or stats["bbox.ymax"][1] < min_lat)
    return True  # no covering column: DuckDB must read every row group for ST_Intersects


def explain(dataset: str | Dataset, filters, limit: int | None = None) -> str:
    """DuckDB's EXPLAIN ANALYZE of the search query, with row groups kept by statistics and
    the wall time of the query itself."""
    from mtquery.query.search import search_sql
    from mtquery.query.session import open_session

    session = open_session(dataset)
    try:
        sql, params = search_sql(filters, limit, session.shape.has_bbox,
                                 reach_km=session.shape.reach_km)
        con = session.con
        t0 = time.perf_counter()
        n = len(con.execute(sql, params).fetchall())
        ms = (time.perf_counter() - t0) * 1e3
        plan = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()
        text = "\n".join(str(r[1]) for r in plan)
        files = list(session.dataset.local_files)
        b = filters.bbox.as_list() if filters.bbox is not None else None
        head = f"-- query:\n{sql};\n-- parameters: {params!r}\n"
        if files:
            kept, total = row_groups_kept(files, b)
            head += (f"-- row groups kept by bbox statistics: {kept} / {total}"
                     + ("" if session.shape.has_bbox else
                        " (no bbox covering column: run 'mtquery optimize' to prune)") + "\n")
        head += f"-- {n} row(s) in {ms:.1f} ms\n"
        return head + text
    finally:
        with contextlib.suppress(Exception):
            session.close()
