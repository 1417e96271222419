"""Drive a headless Chromium over the DevTools protocol (a small websocket client, standard
library only): the map page's browser tests use it (a test helper, not part of the wheel).

    with Chromium() as b:
        b.navigate(url); b.wait_for("window.mtq && window.mtq.ready")
        b.click(x, y); b.screenshot("page.png")
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: software WebGL (MapLibre needs WebGL 2) without a GPU or a display
FLAGS = ("--headless=new", "--no-sandbox", "--no-first-run", "--no-default-browser-check",
         "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--hide-scrollbars", "--mute-audio")


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or $MTQUERY_CHROMIUM."""
    env = os.environ.get("MTQUERY_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, NAMES) if p), None)


class BrowserError(RuntimeError):
    pass


class _Socket:
    """A websocket client connection (RFC 6455: text frames, masked, no extensions)."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise BrowserError("the browser closed the DevTools connection")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise BrowserError(f"DevTools handshake failed: {head[:80]!r}")

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise BrowserError("the browser closed the DevTools connection")
            buf += chunk
        return bytes(buf)

    def send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 8:
                raise BrowserError("the browser closed the DevTools connection")
            if opcode in (9, 10):  # ping / pong: nothing to answer for DevTools
                continue
            parts.append(data)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class Chromium:
    """A headless Chromium with one page, driven over DevTools."""

    def __init__(self, width: int = 1280, height: int = 800, binary: str | None = None,
                 timeout: float = 60.0) -> None:
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no chromium on PATH (apt-get install chromium)")
        self.size = (width, height)
        self.timeout = timeout
        self.events: list[dict] = []
        self._id = 0

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="mtquery-chromium-")
        self.proc = subprocess.Popen(
            [self.binary, *FLAGS, "--remote-debugging-port=0",
             f"--user-data-dir={self._profile.name}",
             f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            port = self._devtools_port()
            self.ws = _Socket(self._page_url(port), self.timeout)
            for domain in ("Page", "Runtime"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride", {
                "width": self.size[0], "height": self.size[1], "deviceScaleFactor": 1,
                "mobile": False})
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + self.timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                return int(m.group(1))
        raise BrowserError("chromium did not open its DevTools port")

    def _page_url(self, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError("chromium has no page to drive")
        return pages[0]["webSocketDebuggerUrl"]

    def __exit__(self, *exc) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        profile = getattr(self, "_profile", None)
        if profile is not None:
            profile.cleanup()

    def call(self, method: str, params: dict | None = None) -> dict:
        """One DevTools command; events that arrive meanwhile are kept in ``events``."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            self.events.append(msg)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def reload(self) -> None:
        self.call("Page.reload", {"ignoreCache": True})

    def allow_downloads(self, folder: str | Path) -> None:
        """Downloads the page starts land in ``folder`` under their suggested names."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.call("Browser.setDownloadBehavior", {"behavior": "allow",
                                                  "downloadPath": str(folder)})

    def key(self, key: str, modifiers: int = 0) -> None:
        """Press and release one key (a character such as ``a``, or ``ArrowDown``)."""
        text = key if len(key) == 1 else ""
        code = {"ArrowDown": 40, "ArrowUp": 38, "Enter": 13}.get(key, ord(key.upper()[0]))
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {
                "type": kind, "key": key, "text": text if kind == "keyDown" else "",
                "windowsVirtualKeyCode": code, "modifiers": modifiers})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (promises awaited)."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression}: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {})}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None, poll: float = 0.1):
        """Poll until ``expression`` is truthy; returns its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last = ""
        while time.monotonic() < deadline:
            try:  # while a page loads, its document may not be there yet
                value = self.evaluate(expression)
            except BrowserError as exc:
                value, last = None, str(exc)
            if value:
                return value
            time.sleep(poll)
        raise BrowserError(f"timed out waiting for {expression} ({last}); page errors: "
                           f"{self.errors()}")

    def click(self, x: float, y: float, modifiers: int = 0) -> None:
        """A left click at page pixel (x, y) (modifiers: 1 Alt, 2 Ctrl, 4 Meta, 8 Shift)."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {
                "type": kind, "x": x, "y": y, "button": "none" if kind == "mouseMoved" else
                "left", "clickCount": 0 if kind == "mouseMoved" else 1,
                "modifiers": modifiers})

    def screenshot(self, path: str | Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(base64.b64decode(data))
        return p

    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors seen so far."""
        out = []
        for e in self.events:
            if e.get("method") == "Runtime.exceptionThrown":
                d = e["params"]["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", ""))
            elif (e.get("method") == "Runtime.consoleAPICalled"
                  and e["params"].get("type") == "error"):
                out.append(" ".join(str(a.get("value", a.get("description", "")))
                                    for a in e["params"].get("args", [])))
        return out


def main(argv: list[str] | None = None) -> None:
    """``python tests/webdriver.py URL OUT.png [WIDTH HEIGHT]``: a screenshot of the map
    page once its query is done."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 4):
        raise SystemExit("usage: python tests/webdriver.py URL OUT.png [WIDTH HEIGHT]")
    width, height = (int(args[2]), int(args[3])) if len(args) == 4 else (1280, 800)
    with Chromium(width, height) as b:
        b.navigate(args[0])
        b.wait_for("document.body && ['done', 'ready'].includes(document.body.dataset.status)"
                   " && !(new URLSearchParams(location.search).toString() && "
                   "document.body.dataset.status === 'ready')")
        time.sleep(0.5)  # let the last map frame settle
        b.screenshot(args[1])


if __name__ == "__main__":
    main()
