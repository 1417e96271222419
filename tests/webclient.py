"""One request to the map page's server (conftest's ``server`` fixture) as the web tests make
it: status, headers and body, HTTP errors returned rather than raised."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlencode


def get(server, path: str, params: dict | None = None, headers: dict | None = None,
        timeout: float = 120):
    url = (server.url.rstrip("/") + "/" + path.lstrip("/")
           + (f"?{urlencode(params)}" if params else ""))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()
