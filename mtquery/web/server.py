"""Run the map page: bind the port first (a port in use is a one-line DataError), open the
dataset read-only (DuckDB reads its files and nothing else once the views exist), serve with
uvicorn. ``start`` runs a server in a thread (tests, notebooks)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mtquery.errors import DataError, UsageError
from mtquery.query.session import DatasetArg, Session, open_session
from mtquery.web.app import Service, create_app
from mtquery.web.guard import HostGuard, check_bind, is_loopback

if TYPE_CHECKING:
    import uvicorn

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def check_tiles(tiles: str | None) -> str | None:
    """An XYZ tile URL template: http(s) with {z}, {x} and {y}."""
    if tiles is None:
        return None
    if not tiles.startswith(("https://", "http://")) or not all(
            p in tiles for p in ("{z}", "{x}", "{y}")):
        raise UsageError("tiles must be an http(s) URL template with {z}, {x} and {y}, e.g. "
                         "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "tiles")
    return tiles


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port must be 0..65535 (got {port})", "port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DataError(f"cannot listen on {host}: {exc.strerror or exc}") from exc
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise DataError(f"port {port} on {host} is in use; stop what listens there or "
                            "choose another port") from exc
        raise DataError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


@dataclass
class Running:
    """A server started by ``start``: its URL, ``stop()`` to end it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    session: Session
    owns_session: bool = True

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.owns_session:
            self.session.close()


def _server(session: Session, host: str, tiles: str | None,
            core: str | None = None) -> uvicorn.Server:
    """Bound to a loopback address, the server answers loopback Host headers only (a web
    page elsewhere cannot reach the API through a rebound DNS name); elsewhere, any."""
    import uvicorn

    app = HostGuard(create_app(Service(session, check_tiles(tiles), core)),
                    loopback_only=is_loopback(host))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            server_header=False)
    return uvicorn.Server(config)


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    name = f"[{host}]" if ":" in host else host
    name = "127.0.0.1" if host in ("0.0.0.0", "::") else name
    return f"http://{name}:{port}/"


def start(dataset: DatasetArg | Session = None, host: str = DEFAULT_HOST, port: int = 0,
          tiles: str | None = None, timeout: float = 30.0,
          core: str | None = None, public: bool = False) -> Running:
    """Serve in a background thread; returns once the server answers. ``core``: the Major
    TOM Core ``metadata.parquet`` (path or URL) the image chips come from. A ``host`` that
    is not a loopback address needs ``public``."""
    check_bind(host, public)
    sock = bind(host, port)
    try:
        session = dataset if isinstance(dataset, Session) else open_session(dataset,
                                                                            read_only=True)
    except BaseException:
        sock.close()
        raise
    server = _server(session, host, tiles, core)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="mtquery-serve")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DataError("the map server did not start")
        time.sleep(0.02)
    return Running(_url(host, sock), server, thread, session,
                   owns_session=not isinstance(dataset, Session))


def serve(dataset: DatasetArg = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          tiles: str | None = None, on_ready: Callable[[str], None] | None = None,
          core: str | None = None, public: bool = False) -> None:
    """Serve the map page until interrupted; ``on_ready(url)`` once it answers. A ``host``
    that is not a loopback address needs ``public``."""
    check_tiles(tiles)
    check_bind(host, public)
    sock = bind(host, port)
    try:
        session = open_session(dataset, read_only=True)
    except BaseException:
        sock.close()
        raise
    server = _server(session, host, tiles, core)
    url = _url(host, sock)
    if on_ready is not None:
        def notify() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                on_ready(url)
        threading.Thread(target=notify, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        session.close()
