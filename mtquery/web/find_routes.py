"""The label loop of the map page: ``/api/score`` (the similarity of a query to every fragment
of a region: one example's "find more", and the similarity heat map) and ``/api/classify``
(a classifier trained on the labelled fragments, applied to the region: "find more").

Both answer JSON: ``detections`` (GeoJSON, the best ``limit`` rows), ``heatmap`` (a PNG data
URL, its lon/lat ``bounds`` and value range, at most :data:`HEAT_SIDE` pixels a side),
``rows`` (fragments scored), ``method``; ``format=geojson|parquet`` downloads the detections.
Computed by the library (``mtquery.score`` / ``mtquery.classify``, issue "Find everything like
this"); bounded: at most :data:`MAX_REGION_ROWS` fragments in the region (counted first),
:data:`MAX_LABEL_IDS` labels, :data:`MAX_DETECTIONS` rows back."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mtquery.errors import UsageError

MAX_REGION_ROWS = 250_000
MAX_LABEL_IDS = 500
MAX_DETECTIONS = 1000
HEAT_SIDE = 512
HEAT_CMAP = "magma"
QUERY_KEYS = ("lat", "lon", "id", "ids", "not_ids", "text")
REGION_KEYS = ("bbox", "start", "end", "cell")
SCORE_PARAMS = (*QUERY_KEYS, *REGION_KEYS, "limit", "format")
CLASSIFY_PARAMS = ("positives", "negatives", *REGION_KEYS, "limit", "format")
COUNT_SQL = "SELECT count(*) AS n FROM embeddings\n"


def ids(p: Any, key: str, need: bool) -> list[str]:
    value = p.text(key)
    out = [i.strip() for i in (value or "").split(",") if i.strip()]
    if (need and not out) or len(out) > MAX_LABEL_IDS:
        raise UsageError(f"{key} takes {1 if need else 0} to {MAX_LABEL_IDS} comma-separated "
                         "unique_ids", key)
    if len(set(out)) != len(out):
        raise UsageError(f"{key} names a unique_id twice", key)
    return out


def limit_of(p: Any) -> int:
    n = p.integer("limit", 50)
    if n is None or not 1 <= n <= MAX_DETECTIONS:
        raise UsageError(f"limit must be 1 to {MAX_DETECTIONS} (got {n})", "limit")
    return n


def region_rows(session: Any, region: dict) -> int:
    """Fragments in the region (the same WHERE clause as every search)."""
    from mtquery.query.filters import Filters, where_sql
    from mtquery.query.search import run

    filters = Filters.of(region.get("bbox"), region.get("start"), region.get("end"),
                         region.get("cell"))
    where, params = where_sql(filters, session.shape.has_bbox, session.shape.reach_km)
    return int(run(session, COUNT_SQL + where, params).column("n")[0].as_py())


def check_region(session: Any, region: dict) -> int:
    n = region_rows(session, region)
    if n > MAX_REGION_ROWS:
        raise UsageError(f"the region holds {n:,} fragments; the page scores at most "
                         f"{MAX_REGION_ROWS:,}: zoom in (or use mtquery score / classify)",
                         "bbox")
    return n


def heat_layer(table: pa.Table, value: str) -> dict:
    """The heat map of a scored table as a map layer: PNG data URL, bounds, value range."""
    from mtquery.find.heatmap import heatmap_raster

    heat = heatmap_raster(table, value)
    side = max(heat.shape)
    if side > HEAT_SIDE:  # coarser pixels: the page needs no more than this
        km = heat.pixel_size[1] * 110.574
        heat = heatmap_raster(table, value, resolution=km * side / HEAT_SIDE * 1.001)
    lo, hi = heat.value_range()
    png = heat.png_bytes(HEAT_CMAP, lo, hi)
    return {"image": "data:image/png;base64," + base64.b64encode(png).decode(),
            "bounds": list(heat.bounds), "lo": lo, "hi": hi, "label": heat.label,
            "width": heat.shape[1], "height": heat.shape[0]}


def top(table: pa.Table, value: str, n: int) -> pa.Table:
    order = pc.sort_indices(table, [(value, "descending")])
    return table.take(order[:n])


def answer(table: pa.Table, value: str, n: int, fmt: str, method: str, name: str,
           file_response: Callable, extra: dict | None = None):
    """JSON (detections + heat layer) or the detections as a file (``file_response``)."""
    from starlette.responses import JSONResponse

    from mtquery.cli.output import geojson_dict

    best = top(table, value, n)
    if fmt != "json":
        return file_response(best, fmt, name)
    body = {"method": method, "rows": table.num_rows, "value": value,
            "detections": geojson_dict(best), "heatmap": heat_layer(table, value)}
    return JSONResponse({**body, **(extra or {})})


def find_routes(service: Any, guarded: Callable, params: Callable,
                file_response: Callable) -> list:
    """The Starlette routes ``/api/score`` and ``/api/classify`` (``guarded``, ``params`` and
    ``file_response`` from the app)."""
    from starlette.routing import Route

    def region(p: Any) -> dict:
        return {k: p.text(k) for k in REGION_KEYS}

    def fmt_of(p: Any) -> str:
        fmt = p.format()
        if fmt == "csv":
            raise UsageError("format must be json, geojson or parquet here", "format")
        return fmt

    def score(request):
        from mtquery.find.api import score as run_score

        p = params(request, SCORE_PARAMS)
        fmt, n, where = fmt_of(p), limit_of(p), region(p)
        query: dict = {"lat": p.number("lat"), "lon": p.number("lon"),
                       "ids": ids(p, "ids", False) or None,
                       "not_ids": ids(p, "not_ids", False) or None, "text": p.text("text")}
        if p.text("id"):
            query["ids"] = [p.text("id")]
        query = {k: v for k, v in query.items() if v is not None}
        if not query:
            raise UsageError("give a query: lat and lon, id, ids or text", "ids")

        def run() -> pa.Table:
            check_region(service.session, where)
            return run_score(service.session, **query, **where)

        return answer(service.call(run), "score", n, fmt, "score", "score", file_response)

    def classify(request):
        from mtquery.find.api import classify as run_classify

        p = params(request, CLASSIFY_PARAMS)
        fmt, n, where = fmt_of(p), limit_of(p), region(p)
        pos, neg = ids(p, "positives", True), ids(p, "negatives", False)
        if set(pos) & set(neg):
            raise UsageError("a fragment is labelled both positive and negative", "negatives")

        def run():
            check_region(service.session, where)
            return run_classify(service.session, positives=pos, negatives=neg or None,
                                **where)

        res = service.call(run)
        table = res.table
        value = "probability" if "probability" in table.column_names else "score"
        extra = {"threshold": _plain(res.threshold), "cv": _plain(res.cv)}
        return answer(table, value, n, fmt, "classify", "detections", file_response, extra)

    return [Route("/api/score", guarded(score)), Route("/api/classify", guarded(classify))]


def _plain(value: Any) -> Any:
    """A JSON-able copy of a result attribute (numbers, dicts of numbers), else None."""
    import json

    try:
        return json.loads(json.dumps(value, default=float))
    except (TypeError, ValueError):
        return None

