"""What the map server lets in and out.

In: a server bound to a loopback address (127.0.0.0/8, ::1, localhost) answers only requests
whose ``Host`` header names a loopback address too (the DNS-rebinding guard: a page on
another site that rebinds its own name to 127.0.0.1 sends its own name as the Host, and gets
400); IPv6 Host headers (``[::1]:8765``) are parsed as such. A server on any other address
accepts every Host, and only when asked explicitly (``public``).

Out: no absolute local path leaves the server: ``scrub`` turns the paths in messages and
answers into their last component.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from mtquery.errors import UsageError

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


def is_loopback(host: str) -> bool:
    """``localhost``, an address in 127.0.0.0/8, ``::1`` (also IPv4-mapped, with or without
    brackets)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


def check_bind(host: str, public: bool) -> bool:
    """Whether ``host`` is a non-loopback address (the caller warns); a UsageError when it is
    one and ``public`` was not given."""
    if is_loopback(host):
        return False
    if not public:
        raise UsageError(f"{host} is not a loopback address: anyone who reaches it could query "
                         "the dataset (the page has no login); give --public to serve there "
                         "anyway, or keep 127.0.0.1", "host")
    return True


def host_name(header: str) -> str:
    """The host of a Host header, without the port (``[::1]:80`` -> ``::1``)."""
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostGuard:
    """ASGI middleware: on a loopback server, 400 for a Host header that is not a loopback
    address (a missing one included)."""

    def __init__(self, app: ASGIApp, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if self.loopback_only and scope.get("type") in ("http", "websocket"):
            host = ""
            for key, value in scope.get("headers") or ():
                if key == b"host":
                    host = value.decode("latin-1")
                    break
            if not is_loopback(host_name(host)) or not host_name(host):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = b"Invalid host header"
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


#: the folders of an absolute path where a path can start (not inside a URL or a template)
_START = r"(?:^|(?<=[\s'\"(\[=,]))"
_DIRS = re.compile(_START + r"(?:[A-Za-z]:[\\/]|/)(?:[^\s'\"/\\<>|]+[\\/])+")


def scrub(text: str, roots: tuple[str, ...] = ()) -> str:
    """``text`` without absolute local paths: each keeps its last component (the folders of
    ``roots``, the working directory and the home directory go first, so a folder name
    with a space goes whole). URLs are left alone."""
    known = {*(r for r in roots if r), os.getcwd(), str(Path.home())}
    for root in sorted((r.rstrip("/\\") for r in known), key=len, reverse=True):
        if len(root) > 1:
            name = _START + re.escape(root)
            text = re.sub(name + r"[\\/]+", "", text)
            text = re.sub(name + r"(?![^\s'\",;:)\]])", Path(root).name or ".", text)
    return _DIRS.sub("", text)


def scrub_value(value: Any, roots: tuple[str, ...] = ()) -> Any:
    """``scrub`` through the strings of a JSON-like value."""
    if isinstance(value, str):
        return scrub(value, roots)
    if isinstance(value, dict):
        return {k: scrub_value(v, roots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(v, roots) for v in value]
    return value


def dataset_roots(dataset: Any) -> tuple[str, ...]:
    """The local folders of a dataset (``mtquery.io.datasets.Dataset``) and its spec when
    that is a local path: what ``scrub`` takes out first."""
    roots = {str(Path(f).resolve().parent) for f in getattr(dataset, "local_files", ())}
    roots |= {str(Path(f).parent) for f in getattr(dataset, "local_files", ())}
    spec = str(getattr(dataset, "spec", "") or "")
    if spec and "://" not in spec and os.path.isabs(spec):
        roots.add(spec)
    return tuple(sorted(roots))
