"""``/api/chip?unique_id=``: the image of a fragment for the map page (``mtquery.io.chips``):
the generated sidecar thumbnail, else the Major TOM Core thumbnail cropped to the fragment,
else a neutral placeholder (status 200, ``X-Mtquery-Chip: none``), never an error for missing
imagery. Images carry an ETag and ``Cache-Control``; an unknown or malformed id is HTTP 400.

The DuckDB lookup of the fragment runs under the service's lock; reading imagery (possibly
remote, by range) does not, so a slow Core read never blocks other queries."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mtquery.errors import MTQueryError

log = logging.getLogger("mtquery")

#: a neutral tile: grey square with a faint landscape glyph
PLACEHOLDER = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
    b'<rect width="64" height="64" fill="#e4e4e0"/>'
    b'<path d="M12 46l14-16 9 10 7-8 10 14z" fill="#c9c9c3"/>'
    b'<circle cx="22" cy="22" r="5" fill="#c9c9c3"/></svg>')
CHIP_CACHE = "private, max-age=86400"
PLACEHOLDER_CACHE = "private, max-age=60"
#: chips kept in memory (each a few KB)
CACHE_ENTRIES = 512


class ChipCache:
    """Encoded chips by unique_id, least recently used out (None: known to have none)."""

    def __init__(self, size: int = CACHE_ENTRIES) -> None:
        self.size = size
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Any]:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return True, self.items[key]
        return False, None

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def lookup_chip(service: Any, unique_id: str, cache: ChipCache):
    """The Chip of ``unique_id`` (None: no imagery), reading imagery outside the lock."""
    from mtquery.io.chips import dataset_core, fragment_row, row_chip

    hit, chip = cache.get(unique_id)
    if hit:
        return chip
    row = service.call(fragment_row, service.session, unique_id)  # 400 when unknown
    try:
        core = getattr(service, "core", None) or dataset_core(service.session)
        chip = row_chip(row, unique_id, core)
    except MTQueryError as exc:  # imagery unreachable or broken: a placeholder, logged
        log.warning("no chip for %s: %s", unique_id, exc)
        return None  # not cached: a remote hiccup may pass
    cache.put(unique_id, chip)
    return chip


def chip_route(service: Any, guarded: Callable, params: Callable):
    """The Starlette route of ``/api/chip`` (``guarded`` and ``params`` from the app)."""
    from starlette.responses import Response
    from starlette.routing import Route

    cache = ChipCache()

    def chip(request):
        p = params(request, ("unique_id",))
        uid = p.text("unique_id")
        if uid is None:
            from mtquery.errors import UsageError

            raise UsageError("give unique_id", "unique_id")
        found = lookup_chip(service, uid, cache)
        if found is None:
            return Response(PLACEHOLDER, media_type="image/svg+xml", headers={
                "Cache-Control": PLACEHOLDER_CACHE, "X-Mtquery-Chip": "none"})
        etag = '"' + hashlib.sha1(found.data).hexdigest()[:20] + '"'
        headers = {"Cache-Control": CHIP_CACHE, "ETag": etag,
                   "X-Mtquery-Chip": f"{found.source} {found.width}x{found.height}"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(found.data, media_type=found.media_type, headers=headers)

    return Route("/api/chip", guarded(chip))
