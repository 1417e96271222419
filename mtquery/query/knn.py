"""``knn``: the one search entry point. It picks the dataset's ANN index when there is one
(``mtquery index build``) and k is within what the index answers, else the exact scan (of the
index's or the cache's vector store, or streamed from the Parquet files). Same rows and
columns either way: rank, unique_id, grid_cell, timestamp, product_id, centre_lat, centre_lon,
distance (1 - cosine similarity)."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from mtquery.errors import UsageError
from mtquery.query.filters import Filters, check_k
from mtquery.query.session import Session
from mtquery.query.vector import QueryVector
from mtquery.vectors.store import skipped_of

log = logging.getLogger("mtquery")


def knn(session: Session, query: QueryVector, k: int = 10, filters: Filters | None = None,
        include_self: bool = False, exact: bool = False,
        index: str | Path | None = None) -> pa.Table:
    """Cosine nearest neighbours of ``query`` (see ``mtquery.query.resolve.resolve_query``).

    ``exact=True`` always scans; ``index`` names an index directory (default: the dataset's
    own, when built). Rows with zero / invalid vectors never match; how many were skipped is
    in the table's metadata (``mtquery.vectors.store.skipped_of``) and logged."""
    from mtquery.vectors.exact import exact_knn, store_knn
    from mtquery.vectors.index import fresh_store_of

    check_k(k)
    if exact and index is not None:
        raise UsageError("exact and index exclude each other", "exact")
    filters = filters or Filters()
    idx = None
    if not exact:
        from mtquery.vectors.index import open_for

        idx = open_for(session, index)
    shardset = None
    if idx is None and not exact:
        from mtquery.vectors.shards import open_for as open_shards_for

        shardset = open_shards_for(session.dataset)
    if shardset is not None:
        from mtquery.vectors.shards import shard_knn

        result = shard_knn(session, shardset, query, k, filters, include_self)
    elif idx is not None:
        if idx.fallback and index is None:
            log.warning("the index of this dataset is not used (%s): exact scan; pass "
                        "index= (--index) to use it anyway", idx.fallback)
            result = store_knn(session, idx.store, query, k, filters, include_self)
        elif k <= idx.max_k:
            from mtquery.vectors.index import index_knn

            result = index_knn(session, idx, query, k, filters, include_self)
        else:
            log.info("k=%d is above what the index answers (%d): exact scan of its store", k,
                     idx.max_k)
            result = store_knn(session, idx.store, query, k, filters, include_self)
    else:
        # not exact: no index was found above, so only an exact search looks for its store
        result = exact_knn(session, query, k, filters, include_self,
                           store=fresh_store_of(session) if exact else None)
    skipped = skipped_of(result)
    if skipped:
        log.warning("skipped %d fragment(s) whose vector is zero or not finite", skipped)
    return result

