"""Large answers of the map server, streamed: the rows are encoded ``CHUNK_ROWS`` at a time as
the client reads them, so a 100,000-row GeoJSON answer holds its Arrow table and one chunk
of text, never the whole document (nor a Python object per row). ``LIMIT`` answers are
computed and encoded at once; the others wait their turn (before their table is
computed), which bounds the server's memory whatever the number of clients. The bytes are
those of ``mtquery.cli.output`` (the same JSON, CSV and Parquet).
"""

from __future__ import annotations

import ctypes
import io
import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from starlette.responses import Response

CHUNK_ROWS = 2_048
#: answers being encoded at once (each holds its table and one chunk)
LIMIT = 4
_slots = threading.BoundedSemaphore(LIMIT)
MEDIA = {"json": "application/json", "geojson": "application/geo+json",
         "csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


_busy = [0]
_busy_lock = threading.Lock()


def _trim() -> None:
    """Give the freed heap back to the system once no answer is being sent (glibc keeps
    the memory of its per-thread arenas otherwise: the server would stay at its peak)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _slices(table: pa.Table) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, CHUNK_ROWS):
        yield table.slice(start, CHUNK_ROWS)


def encode(table: pa.Table, fmt: str) -> Iterator[bytes]:
    """``table`` as ``fmt`` (json, geojson, csv, parquet), in pieces."""
    from mtquery.cli.output import geojson_dict, to_csv, to_records, write_parquet

    if fmt == "parquet":  # compressed row groups: one buffer the size of the file
        buf = io.BytesIO()
        write_parquet(table, buf)
        yield buf.getvalue()
        return
    if fmt == "csv":
        for i, part in enumerate(_slices(table) if table.num_rows else [table]):
            text = to_csv(part)
            yield (text if i == 0 else text.split("\n", 1)[1]).encode()
        return
    head, tail = (b'{"type": "FeatureCollection", "features": [', b"]}") if (
        fmt == "geojson") else (b"[", b"]")
    yield head
    for i, part in enumerate(_slices(table)):
        rows = geojson_dict(part)["features"] if fmt == "geojson" else to_records(part)
        text = json.dumps(rows, allow_nan=False)[1:-1]
        yield ((", " if i else "") + text).encode()
    yield tail


class Slot:
    """One of the ``LIMIT`` places: taken before the table is computed, given back when its
    answer has been sent, the client went away, or computing it failed (once)."""

    def __init__(self, timeout: float) -> None:
        from mtquery.errors import DataError

        if not _slots.acquire(timeout=timeout):
            raise DataError("the server is busy with other large answers; try again")
        self._held = True
        with _busy_lock:
            _busy[0] += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            _slots.release()
            with _busy_lock:
                _busy[0] -= 1
                idle = _busy[0] == 0
            if idle:
                _trim()

    def __del__(self) -> None:  # an answer that was never started
        self.release()


def _sent(slot: Slot, table: pa.Table, fmt: str) -> Iterator[bytes]:
    try:
        yield from encode(table, fmt)
    finally:
        slot.release()


def table_response(rows: pa.Table | Callable[[], pa.Table], fmt: str, name: str,
                   wait: float = 120.0) -> Response:
    """A streamed answer of ``rows`` (a table, or the call that computes it: computed once
    a place is free) as ``fmt``; not json: an attachment ``name.fmt``."""
    from starlette.responses import StreamingResponse

    slot = Slot(wait)
    try:
        table = rows() if callable(rows) else rows
    except BaseException:
        slot.release()
        raise
    headers = {} if fmt == "json" else {
        "Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    return StreamingResponse(_sent(slot, table, fmt), media_type=MEDIA[fmt], headers=headers)
