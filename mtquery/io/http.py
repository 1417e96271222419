"""The one HTTP layer: every remote read of mtquery (Parquet footers and byte ranges, Hugging
Face listings, generation's range reads) goes through ``get``. Built on urllib3:

- pooled connections: one pool per host, kept for the process (``POOL_SIZE`` connections);
- retries with backoff: HTTP 429 and 5xx, refused, reset and dropped connections, bodies cut
  short and reads past the timeout are tried again (``retries`` times, 0.1 s doubling up to
  5 s between tries; a server's ``Retry-After`` is honoured up to 30 s);
- timeouts: ``connect_timeout`` to open a connection, ``timeout`` for each read of the
  socket; the error after the last try names the URL;
- Ctrl-C: ``run_all`` runs reads on daemon threads while the calling thread waits in an
  interruptible wait, so ``KeyboardInterrupt`` arrives at once and no stalled read keeps the
  process alive.

Settings: ``$MTQUERY_HTTP_RETRIES`` (default 5), ``$MTQUERY_HTTP_TIMEOUT`` (seconds, 30),
``$MTQUERY_HTTP_CONNECT_TIMEOUT`` (seconds, 10), or ``configure()`` in code.
``duckdb_settings`` hands the same numbers to DuckDB's httpfs, so reads that go through
DuckDB retry and time out alike. urllib3 is imported on the first request only (the local
commands never load it).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from mtquery.errors import DataError, UsageError

if TYPE_CHECKING:
    import duckdb
    import urllib3

ENV_RETRIES = "MTQUERY_HTTP_RETRIES"
ENV_TIMEOUT = "MTQUERY_HTTP_TIMEOUT"
ENV_CONNECT_TIMEOUT = "MTQUERY_HTTP_CONNECT_TIMEOUT"
#: statuses tried again (the others are answers: 404, 403, 416...)
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_S = 0.1
BACKOFF_MAX_S = 5.0
RETRY_AFTER_MAX_S = 30.0
MAX_REDIRECTS = 5
POOL_SIZE = 16
USER_AGENT = "mtquery"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Settings:
    """How remote reads retry and time out."""

    retries: int = 5
    timeout: float = 30.0
    connect_timeout: float = 10.0


_override: Settings | None = None


def _env_number(name: str, default: float, low: float, high: float, whole: bool) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "a whole number" if whole else "a number of seconds"
        raise UsageError(f"${name} must be {kind} from {low:g} to {high:g} (got {text!r})",
                         name)
    return value


def settings() -> Settings:
    """The settings in force: ``configure``'s, else the environment's, else the defaults."""
    if _override is not None:
        return _override
    d = Settings()
    return Settings(
        retries=int(_env_number(ENV_RETRIES, d.retries, 0, 100, whole=True)),
        timeout=_env_number(ENV_TIMEOUT, d.timeout, 0.1, 3600, whole=False),
        connect_timeout=_env_number(ENV_CONNECT_TIMEOUT, d.connect_timeout, 0.1, 3600,
                                    whole=False))


def configure(retries: int | None = None, timeout: float | None = None,
              connect_timeout: float | None = None) -> Settings:
    """Set how remote reads retry and time out, for the process (None: keep); returns the
    settings now in force."""
    global _override
    new = replace(settings(), **{k: v for k, v in (("retries", retries), ("timeout", timeout),
                                                   ("connect_timeout", connect_timeout))
                                 if v is not None})
    if new.retries < 0 or new.timeout <= 0 or new.connect_timeout <= 0:
        raise UsageError("retries must be >= 0 and timeouts > 0", "retries")
    _override = new
    return new


def reset() -> None:
    """Back to the environment's settings (and fresh connections)."""
    global _override, _pool
    _override = None
    with _pool_lock:
        _pool = None


# ---------------------------------------------------------------- the pool

_pool: tuple[Settings, urllib3.PoolManager] | None = None
_pool_lock = threading.Lock()


def _manager(s: Settings) -> urllib3.PoolManager:
    global _pool
    with _pool_lock:
        if _pool is not None and _pool[0] == s:
            return _pool[1]
        import urllib3
        from urllib3.util import Retry, Timeout

        class CappedRetry(Retry):
            def get_retry_after(self, response):  # a server's wait, at most 30 s
                value = super().get_retry_after(response)
                return None if value is None else min(value, RETRY_AFTER_MAX_S)

        retry = CappedRetry(total=None, connect=s.retries, read=s.retries, status=s.retries,
                            other=s.retries, redirect=MAX_REDIRECTS, allowed_methods=None,
                            status_forcelist=RETRY_STATUS, backoff_factor=BACKOFF_S,
                            backoff_max=BACKOFF_MAX_S, backoff_jitter=BACKOFF_S,
                            raise_on_status=False, respect_retry_after_header=True)
        manager = urllib3.PoolManager(num_pools=64, maxsize=POOL_SIZE, block=False,
                                      retries=retry,
                                      timeout=Timeout(connect=s.connect_timeout,
                                                      read=s.timeout),
                                      headers={"User-Agent": USER_AGENT,
                                               "Accept-Encoding": "identity"})
        _pool = (s, manager)
        return manager


@dataclass(frozen=True)
class Response:
    url: str  # the URL asked for (before redirects)
    status: int
    reason: str
    headers: Mapping[str, str]  # lower-case names
    data: bytes
    length: int  # of the body (Content-Length when it was left unread)


def get(url: str, headers: Mapping[str, str] | None = None,
        max_body: int | None = None) -> Response:
    """GET ``url``, redirects followed, retried as the settings say (429 / 5xx, connections
    refused, reset, dropped, bodies cut short or stalled past the timeout). A status that is
    not retried, or is still there after the last try, comes back as a Response (the caller
    words it); a connection that cannot be made or keeps breaking is a DataError naming the
    URL. ``max_body``: a 200 answer announced longer than this is left unread (``data``
    empty, ``length`` its size): a server that ignores ``Range`` does not send a whole file
    for nothing."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DataError(f"cannot read {url} over HTTP (http:// and https:// only)")
    s = settings()
    manager = _manager(s)
    from urllib3.exceptions import HTTPError

    body_tries = 0
    while True:
        try:  # urllib3 retries the statuses and the connection errors up to here
            r = manager.request("GET", url, headers=dict(headers or {}), preload_content=False,
                                decode_content=False)
        except HTTPError as exc:
            raise DataError(failure(url, exc, s)) from None
        except OSError as exc:
            raise DataError(f"connection lost reading {url}: {exc.strerror or exc}") from None
        head = {k.lower(): v for k, v in r.headers.items()}
        announced = int(head.get("content-length") or -1)
        try:
            if r.status == 200 and max_body is not None and announced > max_body:
                r.close()
                return Response(url, r.status, r.reason or "", head, b"", announced)
            data = r.read()  # a body cut short or stalled raises here: tried again below
            r.release_conn()
            return Response(url, r.status, r.reason or "", head, data, len(data))
        except (HTTPError, OSError) as exc:
            r.close()
            body_tries += 1
            if body_tries > s.retries:
                raise DataError(failure(url, exc, s)) from None
            threading.Event().wait(min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (body_tries - 1)))


def failure(url: str, exc: BaseException, s: Settings | None = None) -> str:
    """One line for a request that failed after its tries."""
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NameResolutionError,
        NewConnectionError,
        ProtocolError,
        ReadTimeoutError,
        ResponseError,
    )

    s = s or settings()
    netloc = urlsplit(url).netloc
    tries = f" (tried {s.retries + 1} times)" if s.retries else ""
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    if isinstance(reason, ResponseError) and "redirect" in str(reason):
        return f"too many redirects reading {url}"
    if isinstance(reason, NameResolutionError):
        return f"cannot reach {netloc}: unknown host ({url})"
    if isinstance(reason, NewConnectionError):  # a subclass of ConnectTimeoutError
        text = str(reason).lower()
        why = "connection refused" if "refused" in text else "cannot connect"
        if "timed out" in text or "timeout" in text:
            why = f"no connection within {s.connect_timeout:g} s"
        return f"cannot reach {netloc}: {why} ({url}){tries}"
    if isinstance(reason, ConnectTimeoutError):
        return (f"cannot reach {netloc}: no connection within {s.connect_timeout:g} s "
                f"({url}){tries}")
    if isinstance(reason, ReadTimeoutError):
        return (f"no answer from {netloc} within {s.timeout:g} s reading {url}{tries}; "
                f"${ENV_TIMEOUT} sets the limit")
    if isinstance(reason, ProtocolError):
        return f"connection lost reading {url}: {_words(reason)}{tries}"
    return f"cannot read {url}: {_words(reason)}{tries}"


def _words(exc: BaseException) -> str:
    inner = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], BaseException) else exc
    text = str(inner).strip() or type(inner).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------- many reads at once


def run_all(fn: Callable[[T], R], items: Iterable[T], workers: int = 8,
            each: Callable[[R], None] | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``workers`` daemon threads, in order; ``each`` is
    called in the calling thread with every result as it comes. After an error the calls
    not started are skipped and, once the running ones ended, the first error (in item
    order) is raised. Ctrl-C in the calling thread raises at once: the running calls are
    left to their threads, which never keep the process alive."""
    todo: Sequence[T] = list(items)
    n = len(todo)
    if n <= 1 or workers <= 1:
        out = []
        for x in todo:
            out.append(fn(x))
            if each is not None:
                each(out[-1])
        return out
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(n):
        jobs.put(i)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    failed = threading.Event()

    def work() -> None:
        while True:
            try:
                i = jobs.get_nowait()
            except queue.Empty:
                return
            if failed.is_set():
                answers.put((i, False, None))
                continue
            try:
                answers.put((i, True, fn(todo[i])))
            except BaseException as exc:  # handed to the caller
                failed.set()
                answers.put((i, False, exc))

    for _ in range(min(workers, n)):
        threading.Thread(target=work, daemon=True, name="mtquery-read").start()
    results: list = [None] * n
    errors: dict[int, BaseException] = {}
    for _ in range(n):
        while True:  # a timed wait: Ctrl-C is seen at once, never held by a stalled read
            try:
                i, ok, value = answers.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        if ok:
            results[i] = value
            if each is not None and not errors:
                each(value)
        elif value is not None:
            errors[i] = value
    if errors:
        raise errors[min(errors)]
    return results


# ---------------------------------------------------------------- DuckDB


def duckdb_settings(con: duckdb.DuckDBPyConnection) -> None:
    """The same retries and timeouts for DuckDB's httpfs reads (call after loading httpfs)."""
    s = settings()
    con.execute("SET http_retries = ?", [s.retries])
    con.execute("SET http_timeout = ?", [max(1, round(s.timeout))])
    con.execute("SET http_retry_wait_ms = ?", [int(BACKOFF_S * 1000)])
    con.execute("SET http_retry_backoff = ?", [2.0])


_DUCKDB_NETWORK = ("timeout", "timed out", "failed to read connection", "partial file",
                   "http error", "could not establish connection", "couldn't connect",
                   "connection refused", "connection reset", "could not connect",
                   "failure when receiving", "recv failure", "http get error")


def duckdb_failure(message: str, sources: Sequence[str]) -> str | None:
    """A DuckDB error of a network read, worded as ours: the URL named (DuckDB's curl
    messages such as "Timeout was reached" name none), the tries and the limit; None for
    other errors."""
    low = message.lower()
    if not any(m in low for m in _DUCKDB_NETWORK):
        return None
    urls = [s for s in sources if "://" in s]
    if not urls:
        return None
    if any(u in message for u in urls):
        where = ""
    elif len(urls) == 1:
        where = f" reading {urls[0]}"
    else:
        prefix = os.path.commonprefix(urls)
        prefix = prefix[:prefix.rfind("/") + 1] if "/" in prefix else prefix
        where = f" reading one of {len(urls)} files under {prefix}"
    s = settings()
    tries = f" (tried {s.retries + 1} times)" if s.retries else ""
    hint = f"; ${ENV_TIMEOUT} sets the limit" if "time" in low else ""
    return f"{message}{where}{tries}{hint}"
