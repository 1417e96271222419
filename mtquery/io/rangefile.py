"""A remote file as a binary, seekable file object whose reads are range requests through
``mtquery.io.remote.read_range`` (so the one HTTP layer's pool, retries and timeouts), for
readers that want a file (pyarrow's ``ParquetFile``, ``json.load``): generation's inputs.

Opening reads the last ``TAIL`` bytes (one suffix request: the file size, and the Parquet
footer pyarrow asks for first); every other ``read(n)`` is one range request of exactly
``n`` bytes: no readahead, no block cache, so pyarrow's ``pre_buffer`` (one coalesced range
per row group) decides what crosses the network. ``hf://datasets/OWNER/NAME[@REV]/PATH``
is read from ``$MTQUERY_HF_ENDPOINT`` (default https://huggingface.co) with ``$HF_TOKEN``.
"""

from __future__ import annotations

import io
from urllib.parse import quote

from mtquery.errors import DataError
from mtquery.io.remote import HF_PATH, hf_endpoint, read_range

TAIL = 64 << 10


def hf_url(spec: str) -> str:
    """The download URL of one ``hf://`` file."""
    m = HF_PATH.match(spec)
    if m is None or any(c in m["path"] for c in "*?["):
        raise DataError(f"not an hf:// file: {spec} (expected hf://datasets/OWNER/NAME/PATH)")
    kind = "" if m["kind"] == "models" else f"{m['kind']}/"
    return (f"{hf_endpoint(default=True)}/{kind}{m['owner']}/{m['name']}/resolve/"
            f"{quote(m['rev'] or 'main', safe='')}/{quote(m['path'])}")


class RangeFile(io.RawIOBase):
    """Read-only, seekable; ``size`` known from the first request."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = hf_url(url) if url.startswith("hf://") else url
        self.name = url
        tail, self.size = read_range(self.url, None, TAIL)
        self._tail_at = self.size - len(tail)
        self._tail = tail
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if end <= self._pos:
            return b""
        if self._pos >= self._tail_at:
            data = self._tail[self._pos - self._tail_at:end - self._tail_at]
        else:
            data, _ = read_range(self.url, self._pos, end - self._pos, self.size)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
