"""Align two datasets of different models fragment by fragment (``grid_cell``,
``product_id``, ``pixel_bbox``; ``unique_id`` differs across models), so what two models see
at a place can be compared: the SQL table macro ``aligned(other)`` (sql/60_align.sql) and
``align`` below, which adds, per pair, how many of each model's k nearest neighbours (among
the aligned fragments) are the same fragments."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError
from mtquery.io.datasets import resolve
from mtquery.query.filters import BBox, Filters, parse_bbox, where_sql
from mtquery.query.search import run
from mtquery.query.session import Session

PAIR_COLUMNS = ("grid_cell", "product_id", "pixel_bbox", "timestamp", "centre_lat",
                "centre_lon", "unique_id", "other_unique_id")


def align_sql(bbox: BBox | None, has_bbox_column: bool, limit: int | None
              ) -> tuple[str, list]:
    """Aligned pairs inside ``bbox`` (standard datasets); parameters: the other dataset's
    files, then the box."""
    where, params = where_sql(Filters(bbox=bbox), has_bbox_column)
    cols = ", ".join(f'a."{c}"' for c in PAIR_COLUMNS)
    sql = (f"SELECT {cols}, a.embedding, a.other_embedding\n"
           "FROM aligned(?) a\n"
           "JOIN (SELECT unique_id FROM embeddings " + where + ") f USING (unique_id)\n"
           "ORDER BY a.grid_cell, a.product_id, a.pixel_bbox")
    if limit is not None:
        sql += "\nLIMIT ?"
    return sql, [*params, *([limit] if limit is not None else [])]


def align(session: Session, other: str | list[str], bbox: str | BBox | None = None,
          limit: int | None = None, k: int = 10, vectors: bool = False) -> pa.Table:
    """Pairs of the same fragment in ``session``'s dataset and ``other``; ``agreement@k``:
    the share of each fragment's k nearest neighbours (cosine, among the pairs returned)
    that both models agree on. ``vectors`` keeps both embeddings."""
    from mtquery.standard.schema import embedding_matrix
    from mtquery.vectors.store import top_k_rows, unit_rows

    ds = resolve(other)
    if ds.remote:
        raise DataError("align reads the other dataset locally; download it first", "other")
    from mtquery.io.roles import roles_of

    if session.shape.roles.standard and roles_of(ds).standard:
        sql, params = align_sql(parse_bbox(bbox), session.shape.has_bbox, limit)
        t = run(session, sql, [ds.duckdb_sources, *params])
        key = "same grid_cell, product_id, pixel_bbox"
    else:
        t, key = _align_other_shape(session, ds, parse_bbox(bbox), limit)
    if t.num_rows == 0:
        raise DataError(f"no fragment of {session.dataset.name} has a counterpart in "
                        f"{ds.name} ({key})", "other")
    a = unit_rows(embedding_matrix(t.column("embedding")))
    b = unit_rows(embedding_matrix(t.column("other_embedding")))
    kk = min(k, t.num_rows - 1)
    if kk > 0:
        sa, sb = np.nan_to_num(a @ a.T, nan=-2.0), np.nan_to_num(b @ b.T, nan=-2.0)
        np.fill_diagonal(sa, -np.inf)
        np.fill_diagonal(sb, -np.inf)
        na, _ = top_k_rows(sa, kk)
        nb, _ = top_k_rows(sb, kk)
        agree = np.array([len(set(x) & set(y)) / kk for x, y in zip(na.tolist(),
                                                                     nb.tolist())])
    else:
        agree = np.full(t.num_rows, np.nan)
    out = t if vectors else t.drop_columns(["embedding", "other_embedding"])
    return out.append_column(f"agreement@{k}", pa.array(agree, pa.float64()))


def _align_other_shape(session: Session, ds, bbox: BBox | None, limit: int | None
                       ) -> tuple[pa.Table, str]:
    """Pairs when a dataset is of another shape (mtquery.io.columns): the other dataset's
    rows through its own views, joined on the id when both have an id column (two models'
    embeddings of the same chips), else on grid cell, time and the same footprint."""
    from mtquery.query.session import open_session

    other = open_session(ds)
    try:
        rows = run(other, "SELECT unique_id, grid_cell, \"timestamp\", "
                          "ST_AsWKB(geometry) AS wkb, embedding FROM embeddings")
        both_ids = other.shape.roles.id is not None and session.shape.roles.id is not None
    finally:
        other.close()
    on = ("o.unique_id = e.unique_id" if both_ids else
          "o.grid_cell = e.grid_cell AND o.\"timestamp\" IS NOT DISTINCT FROM e.\"timestamp\""
          " AND o.wkb = ST_AsWKB(e.geometry)")
    where, params = where_sql(Filters(bbox=bbox), session.shape.has_bbox,
                              session.shape.reach_km)
    cols = ", ".join(f'e."{c}"' for c in PAIR_COLUMNS if c != "other_unique_id")
    sql = (f"SELECT {cols}, o.unique_id AS other_unique_id, e.embedding, "
           "o.embedding AS other_embedding\n"
           f"FROM (SELECT * FROM embeddings {where}) e JOIN mt_align_other o ON {on}\n"
           "ORDER BY e.grid_cell, e.\"timestamp\", e.unique_id"
           + ("\nLIMIT ?" if limit is not None else ""))
    session.con.register("mt_align_other", rows)
    try:
        t = run(session, sql, [*params, *([limit] if limit is not None else [])])
    finally:
        session.con.unregister("mt_align_other")
    return t, ("same id" if both_ids else "same grid cell, time and footprint")
