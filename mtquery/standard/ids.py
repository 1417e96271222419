"""``unique_id`` per the standard: SHA-256 hex of
``f"{geometry}_{timestamp}_{product_id}_{embedding}"`` with shapely's WKT of the WGS84 geometry
and numpy's ``str()`` of the embedding (default print options, so vectors longer than 1,000
values are summarised with ``...``, as in the reference)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import shapely

NUMPY_PRINT_DEFAULTS = dict(precision=8, threshold=1000, edgeitems=3, linewidth=75,
                       suppress=False, nanstr="nan", infstr="inf", sign="-",
                       floatmode="maxprec", legacy=False)


def unique_ids(geometries: Sequence | np.ndarray, timestamps: Sequence[str],
               product_ids: Sequence[str], embeddings: np.ndarray) -> list[str]:
    wkts = shapely.to_wkt(np.asarray(geometries, dtype=object), rounding_precision=-1,
                          trim=True) if len(geometries) else []
    out = []
    with np.printoptions(**NUMPY_PRINT_DEFAULTS):  # the defaults, whatever a caller has set
        for wkt, ts, pid, vec in zip(wkts, timestamps, product_ids, embeddings, strict=True):
            text = f"{wkt}_{ts}_{pid}_{np.asarray(vec)}"
            out.append(hashlib.sha256(text.encode()).hexdigest())
    return out
