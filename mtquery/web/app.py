"""The map page's server: a Starlette app over ONE read-only session (``Service``), every
answer computed by the library (``mtquery.api``), the page a view of it.

``/api/knn`` and ``/api/search`` return the CLI's ``--format json`` rows (``format=geojson |
csv | parquet`` for the footprints and exports); library errors are HTTP 400 with the
one-line message; parameters are parsed here and validated by the library as for the CLI;
no endpoint takes SQL."""

from __future__ import annotations

import logging
import mimetypes
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mtquery.errors import MTQueryError, UsageError
from mtquery.query.session import Session
from mtquery.web.guard import dataset_roots, scrub, scrub_value
from mtquery.web.stream import table_response

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger("mtquery")
mimetypes.add_type("text/javascript", ".mjs")

STATIC = Path(str(resources.files("mtquery.web").joinpath("static")))
#: fragments drawn as the coverage layer; above, grid cells, then the bounding box
COVERAGE_FRAGMENTS = 20_000
COVERAGE_CELLS = 20_000
MAX_IDS = 100
#: most rows one API call returns (k or limit): the page stays responsive for every user
MAX_API_ROWS = 100_000
FORMATS = ("json", "geojson", "csv", "parquet")
FILTERS = ("bbox", "start", "end", "cell")
KNN_PARAMS = ("lat", "lon", "id", "ids", "not_ids", "text", "k", "include_self", "format",
              *FILTERS)
SEARCH_PARAMS = ("limit", "format", *FILTERS)


def text_model(session: Session) -> str | None:
    """The dataset's model when it has a text tower (and the ``models`` extra is here)."""
    try:
        from mtquery.generate.models import text_models
        from mtquery.query.encode import dataset_model

        name = dataset_model(session)
        return name if name in text_models() else None
    except (ImportError, MTQueryError):
        return None


class Params:
    """Query-string values, each named once and known to the endpoint."""

    def __init__(self, items: list[tuple[str, str]], allowed: tuple[str, ...]) -> None:
        self.values: dict[str, str] = {}
        for key, value in items:
            if key not in allowed:
                raise UsageError(f"unknown parameter {key!r}; this endpoint takes "
                                 f"{', '.join(allowed)}", key)
            if key in self.values:
                raise UsageError(f"give {key} once", key)
            self.values[key] = value.strip()

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return value if value else None

    def number(self, key: str) -> float | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"{key} must be a number (got {value!r})", key) from None

    def integer(self, key: str, default: int | None) -> int | None:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise UsageError(f"{key} must be a whole number (got {value!r})", key) from None
        if number > MAX_API_ROWS:
            raise UsageError(f"{key} is at most {MAX_API_ROWS} in the web API (got {number}); "
                             "the command line has no such bound", key)
        return number

    def flag(self, key: str) -> bool:
        value = (self.text(key) or "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise UsageError(f"{key} must be true or false (got {value!r})", key)
        return value in ("true", "1")

    def id_list(self, key: str) -> list[str] | None:
        value = self.text(key)
        if value is None:
            return None
        ids = [i.strip() for i in value.split(",") if i.strip()]
        if not ids or len(ids) > MAX_IDS:
            raise UsageError(f"{key} takes 1 to {MAX_IDS} comma-separated unique_ids", key)
        return ids

    def format(self) -> str:
        fmt = self.text("format") or "json"
        if fmt not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(FORMATS)} (got {fmt!r})",
                             "format")
        return fmt

    def filters(self) -> dict:
        return {k: self.text(k) for k in FILTERS}


class Service:
    """The library behind the page: one session (read-only), one lock (a DuckDB connection
    is not thread-safe), coverage computed once."""

    def __init__(self, session: Session, tiles: str | None = None,
                 core: str | None = None) -> None:
        self.session = session
        self.tiles = tiles
        self.core = core  # the Major TOM Core metadata that image chips come from
        self.lock = threading.Lock()
        self._info: dict | None = None
        self._coverage: dict | None = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return fn(*args, **kwargs)

    def info(self) -> dict:
        if self._info is None:
            from mtquery.api import info

            data = self.call(info, self.session)
            data.pop("sources", None)  # local paths stay on this machine
            data["text_query"] = self.call(text_model, self.session) is not None
            data["tiles"] = self.tiles
            self._info = scrub_value(data, dataset_roots(self.session.dataset))
        return self._info

    def knn(self, params: Params, geometry: bool) -> pa.Table:
        from mtquery.api import knn

        query: dict = {"id": params.text("id"), "ids": params.id_list("ids"),
                       "not_ids": params.id_list("not_ids"),
                       "lat": params.number("lat"), "lon": params.number("lon")}
        text = params.text("text")
        if text is not None:
            if not self.info()["text_query"]:
                raise UsageError("this dataset's model has no text tower (or the models "
                                 "extra is not installed): no text queries", "text")
            query["text"] = text
        return self.call(knn, self.session, **{k: v for k, v in query.items() if v is not None},
                         k=params.integer("k", 10), include_self=params.flag("include_self"),
                         geometry=geometry, **params.filters())

    def search(self, params: Params, geometry: bool) -> pa.Table:
        from mtquery.api import search
        from mtquery.query.filters import check_limit

        limit = params.integer("limit", 100)
        check_limit(limit)
        return self.call(search, self.session, limit=limit, geometry=geometry,
                         **params.filters())

    def fragment(self, params: Params) -> dict:
        """The fragment a click or an id names, as a GeoJSON feature."""
        from mtquery.api import with_geometry
        from mtquery.cli.output import geojson_dict
        from mtquery.query.resolve import resolve_query

        def run() -> dict:
            q = resolve_query(self.session, lat=params.number("lat"), lon=params.number("lon"),
                              id=params.text("id"))
            row = pa.table({"unique_id": [q.unique_id], "grid_cell": [q.grid_cell],
                            "timestamp": [q.timestamp], "centre_lat": [q.centre_lat],
                            "centre_lon": [q.centre_lon]})
            return geojson_dict(with_geometry(self.session, row))["features"][0]

        return self.call(run)

    def coverage(self) -> dict:
        """The dataset's footprint for the page: its fragments when there are few, else its
        grid cells, else its bounding box."""
        if self._coverage is None:
            self._coverage = self.call(self._compute_coverage)
        return self._coverage

    def _compute_coverage(self) -> dict:
        from mtquery.api import search
        from mtquery.cli.output import geojson_dict
        from mtquery.query.search import run

        info = self._info or {}
        rows, cells = int(info.get("rows") or 0), int(info.get("grid_cells") or 0)
        if rows and rows <= COVERAGE_FRAGMENTS:
            table = search(self.session, limit=None).select(["grid_cell", "geometry"])
            kind = "fragments"
        elif cells and cells <= COVERAGE_CELLS and not self.session.dataset.remote:
            table = run(self.session, "SELECT grid_cell, ST_AsWKB(footprint) AS geometry "
                        "FROM cells ORDER BY grid_cell")
            kind = "cells"
        else:
            b = info.get("bbox") or [-180, -90, 180, 90]
            table = pa.table({"min_lon": [b[0]], "min_lat": [b[1]], "max_lon": [b[2]],
                              "max_lat": [b[3]]})
            kind = "bbox"
        doc = geojson_dict(table)
        doc["coverage"] = kind
        return doc


def create_app(service: Service, allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app: ``/`` (the page), ``/static``, ``/api/info``, ``/api/coverage``,
    ``/api/fragment``, ``/api/knn``, ``/api/search``, ``/api/chip`` (``mtquery.web.chips``),
    ``/api/score`` and ``/api/classify`` (``mtquery.web.find_routes``)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from mtquery.web.chips import chip_route
    from mtquery.web.find_routes import find_routes

    roots = dataset_roots(service.session.dataset)

    def guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:  # sync: Starlette runs it in its thread pool
            try:
                return handler(request)
            except MTQueryError as exc:  # no local path leaves the server
                return JSONResponse({"error": scrub(str(exc), roots), "argument": exc.argument},
                                    status_code=400)
            except Exception as exc:  # the server keeps serving; the log has the details
                log.exception("internal error on %s", request.url.path)
                return JSONResponse({"error": scrub(f"internal error: {type(exc).__name__}: "
                                                    f"{exc}", roots)}, status_code=500)
        return endpoint

    def params(request: Request, allowed: tuple[str, ...]) -> Params:
        return Params(request.query_params.multi_items(), allowed)

    def knn(request: Request) -> Response:
        p = params(request, KNN_PARAMS)
        fmt = p.format()
        return table_response(lambda: service.knn(p, geometry=fmt in ("geojson", "parquet")),
                              fmt, "knn")

    def search(request: Request) -> Response:
        p = params(request, SEARCH_PARAMS)
        fmt = p.format()
        return table_response(lambda: service.search(p, geometry=fmt in ("geojson",
                                                                           "parquet")),
                              fmt, "search")

    def fragment(request: Request) -> Response:
        return JSONResponse(service.fragment(params(request, ("lat", "lon", "id"))))

    def info(request: Request) -> Response:
        params(request, ())
        return JSONResponse(service.info())

    def coverage(request: Request) -> Response:
        params(request, ())
        service.info()
        return JSONResponse(service.coverage())

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_security_headers(service.tiles))

    routes = [Route("/", page),
              Route("/api/info", guarded(info)), Route("/api/coverage", guarded(coverage)),
              Route("/api/fragment", guarded(fragment)), Route("/api/knn", guarded(knn)),
              chip_route(service, guarded, params),
              *find_routes(service, guarded, params, table_response),
              Route("/api/search", guarded(search)),
              Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"])]
    return Starlette(routes=routes, middleware=middleware)


def _security_headers(tiles: str | None) -> dict[str, str]:
    """The page loads nothing from elsewhere, except the optional tile server (``data:``:
    the heat-map layer, which MapLibre fetches)."""
    extra = ""
    if tiles:
        from urllib.parse import urlsplit

        parts = urlsplit(tiles.replace("{", "").replace("}", ""))
        extra = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return {"Content-Security-Policy": (
        f"default-src 'self'; img-src 'self' data: blob:{extra}; connect-src 'self' data:{extra}; "
        "worker-src 'self' blob:; child-src blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; base-uri 'none'"),
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
