"""A real HTTP/1.1 file server on 127.0.0.1 that honours Range requests (as object stores and
the Hugging Face CDN do), for testing remote reads. Counts the bytes it sends.

It also answers the two Hugging Face endpoint calls mtquery makes, so a folder served by it is
a mirror of ``hf://datasets/OWNER/NAME/...`` (``$MTQUERY_HF_ENDPOINT``):
``/api/datasets/OWNER/NAME/tree/REV/DIR`` lists ``ROOT/OWNER/NAME/DIR`` as JSON, and
``/datasets/OWNER/NAME/resolve/REV/PATH`` redirects (302, as the Hub does) to ``/OWNER/NAME/PATH``.

Faults for tests: ``no_range`` (answers every request with the whole file, status 200),
``cut_after`` (promises the full length, sends that many bytes, closes), and ``flaky``:
every Nth request answered 500 (or 429), bodies cut halfway, bodies stalled halfway for
some seconds, each injected fault counted in ``injected``.

    python tests/rangeserver.py ROOT [--port 8765]      # serve a folder until interrupted
"""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_TREE = re.compile(r"^/api/datasets/([^/]+)/([^/]+)/tree/([^/]+)/?(.*)$")
_RESOLVE = re.compile(r"^/datasets/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


class RangeServer:
    def __init__(self, root: str | Path, port: int = 0) -> None:
        self.root = Path(root)
        self.bytes_sent = 0
        self.range_requests = 0
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        self.no_range = False
        self.cut_after: int | None = None
        # injected faults (see ``flaky``); ``injected`` counts them by kind
        self.fail_every: int | None = None
        self.fail_status = 500
        self.cut_next = 0
        self.stall_next = 0
        self.stall_s = 0.0
        self.injected: dict[str, int] = {"status": 0, "cut": 0, "stall": 0}
        self._count = 0
        self._after = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _file(self, rel: str) -> Path | None:
                p = (server.root / rel.lstrip("/")).resolve()
                return p if p.is_file() and server.root.resolve() in p.parents else None

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _tree(self, m: re.Match) -> None:
                owner, name, _rev, sub = m.groups()
                base = (server.root / owner / name).resolve()
                folder = (base / unquote(sub)).resolve()
                if not folder.is_dir() or (base not in folder.parents and folder != base):
                    self._empty(404)
                    return
                recursive = "recursive=true" in (urlsplit(self.path).query or "")
                found = sorted(folder.rglob("*") if recursive else folder.iterdir())
                body = json.dumps([{"type": "file" if p.is_file() else "directory",
                                    "path": p.relative_to(base).as_posix(),
                                    "size": p.stat().st_size if p.is_file() else 0}
                                   for p in found]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self, body: bool) -> None:
                path = urlsplit(self.path).path
                with server._lock:
                    server.requests.append((path, self.headers.get("Range", "") or ""))
                    server._count += 1
                    early = server._count <= server._after
                    fail = (bool(server.fail_every) and not early
                            and server._count % server.fail_every == 0)
                    if fail:
                        server.injected["status"] += 1
                if fail:
                    self._empty(server.fail_status, {"Retry-After": "0"})
                    return
                m = _TREE.match(path)
                if m:
                    self._tree(m)
                    return
                m = _RESOLVE.match(path)
                if m:
                    owner, name, _rev, rel = m.groups()
                    self._empty(302, {"Location": f"/{owner}/{name}/{rel}"})
                    return
                file = self._file(unquote(path))
                if file is None:
                    self._empty(404)
                    return
                size = file.stat().st_size
                start, end = 0, size - 1
                status = 200
                m = _RANGE.fullmatch(self.headers.get("Range", "") or "")
                if m and (m.group(1) or m.group(2)) and not server.no_range:
                    if m.group(1):
                        start = int(m.group(1))
                        end = int(m.group(2)) if m.group(2) else size - 1
                    else:
                        start = max(0, size - int(m.group(2)))
                    end = min(end, size - 1)
                    if start > end:
                        self._empty(416, {"Content-Range": f"bytes */{size}"})
                        return
                    status = 206
                    with server._lock:
                        server.range_requests += 1
                length = end - start + 1
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "none" if server.no_range else "bytes")
                self.send_header("Content-Length", str(length))
                self.send_header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
                self.send_header("ETag", f'"{size}-{int(file.stat().st_mtime)}"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not body:
                    return
                with file.open("rb") as fh:
                    fh.seek(start)
                    data = fh.read(length)
                cut = stall = False
                with server._lock:
                    if early:
                        pass
                    elif body and len(data) > 1 and server.cut_next:
                        server.cut_next -= 1
                        server.injected["cut"] += 1
                        cut = True
                    elif body and len(data) > 1 and server.stall_next:
                        server.stall_next -= 1
                        server.injected["stall"] += 1
                        stall = True
                if server.cut_after is not None:
                    data = data[: server.cut_after]
                if cut:
                    data = data[: len(data) // 2]
                    self.close_connection = True
                try:
                    if stall:
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        server._stop.wait(server.stall_s)
                        data = data[len(data) // 2:]
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return
                finally:
                    with server._lock:
                        server.bytes_sent += len(data)
                if server.cut_after is not None:
                    self.close_connection = True

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client that hangs up mid-answer (as mtquery does on a 200) is fine

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.endpoint}/{name}"

    def reset(self) -> None:
        with self._lock:
            self.bytes_sent = 0
            self.range_requests = 0
            self.requests.clear()

    def __enter__(self) -> RangeServer:
        self.thread.start()
        return self

    def flaky(self, fail_every: int | None = 5, cuts: int = 1, stalls: int = 0,
              stall_s: float = 10.0, status: int = 500, after: int = 0) -> None:
        """Inject faults from now on: every ``fail_every``-th request answers ``status``
        (with ``Retry-After: 0``); the next ``cuts`` file answers are cut halfway (the
        connection closed); the next ``stalls`` file answers stop halfway for ``stall_s``
        seconds. The first ``after`` requests pass unharmed. ``injected`` counts the faults
        sent."""
        with self._lock:
            self._after = after
            self.fail_every, self.fail_status = fail_every, status
            self.cut_next, self.stall_next, self.stall_s = cuts, stalls, stall_s
            self.injected = {"status": 0, "cut": 0, "stall": 0}
            self._count = 0

    def steady(self) -> None:
        """No more injected faults (``injected`` keeps its counts)."""
        with self._lock:
            self.fail_every, self.cut_next, self.stall_next, self._after = None, 0, 0, 0

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(root: str | os.PathLike) -> RangeServer:
    return RangeServer(root)


if __name__ == "__main__":
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Serve a folder over HTTP with Range support.")
    ap.add_argument("root")
    ap.add_argument("--port", type=int, default=8765)
    a = ap.parse_args()
    with RangeServer(a.root, a.port) as srv:
        print(f"serving {a.root} at {srv.endpoint} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
