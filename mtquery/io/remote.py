"""Remote Parquet files, read by range: the footers first, then only the byte ranges a
question needs, through ``mtquery.io.http`` (pooled connections, retries with backoff,
timeouts naming the URL): one clear line for an unreachable host, a missing file, a server
that ignores ``Range``, a truncated file.

- ``expand``: a dataset's sources as fetchable URLs (``hf://`` globs listed through the Hugging
  Face API of ``$MTQUERY_HF_ENDPOINT``, default https://huggingface.co, so a mirror serves the
  catalog names too);
- ``read_footers``: every file's footer in parallel (one suffix request each, a second only for
  a footer above 64 KiB), checked against the standard schema, kept for the process;
- ``Footer`` / ``RowGroup``: rows, byte ranges of each column chunk, min/max statistics of the
  columns that prune (``centre_lat``, ``centre_lon``, ``timestamp``, ``grid_cell``);
- ``read_range``: exact byte ranges (``mtquery.io.extract`` fetches row groups with it,
  ``mtquery.io.rangefile`` serves generation's file objects with it).

Local files take the same path (``pyarrow`` reads their footers), so plans and dry runs
work on both.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.errors import DataError
from mtquery.io import http
from mtquery.standard.schema import REQUIRED, embedding_type

ENV_ENDPOINT = "MTQUERY_HF_ENDPOINT"
HF_DEFAULT = "https://huggingface.co"
TAIL_BYTES = 64 << 10
WORKERS = 8
#: columns whose row-group min/max statistics prune a read
PRUNE_COLUMNS = ("centre_lat", "centre_lon", "timestamp", "grid_cell")
HF_PATH = re.compile(r"^hf://(?P<kind>datasets|spaces|models)/(?P<owner>[^/]+)/(?P<name>[^/@]+)"
                 r"(?:@(?P<rev>[^/]+))?/(?P<path>.+)$")


# ---------------------------------------------------------------- naming


def hf_endpoint(default: bool = False) -> str | None:
    """The Hugging Face endpoint (a mirror when $MTQUERY_HF_ENDPOINT or $HF_ENDPOINT is set);
    None when unset, unless ``default``."""
    value = os.environ.get(ENV_ENDPOINT) or os.environ.get("HF_ENDPOINT")
    if value:
        return value.rstrip("/")
    return HF_DEFAULT if default else None


def hf_list(spec: str, endpoint: str | None = None) -> list[str]:
    """URLs of the files an ``hf://datasets/owner/name[@rev]/path-glob`` names, listed through
    the endpoint's tree API (``/api/datasets/owner/name/tree/rev/dir``)."""
    m = HF_PATH.match(spec)
    if m is None:
        raise DataError(f"not an hf:// path: {spec} (expected hf://datasets/OWNER/NAME/PATH)")
    endpoint = (endpoint or hf_endpoint(default=True)).rstrip("/")
    kind, repo, rev = m["kind"], f"{m['owner']}/{m['name']}", m["rev"] or "main"
    pattern = m["path"]
    static = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    folder = static.rsplit("/", 1)[0] if "/" in static else ""
    recursive = "**" in pattern or "/" in pattern[len(folder) + 1:]
    url = (f"{endpoint}/api/{kind}/{repo}/tree/{quote(rev, safe='')}/{quote(folder)}"
           + ("?recursive=true" if recursive else ""))
    entries = []
    while url:
        body, headers = _get_all(url)
        try:
            entries += json.loads(body)
        except ValueError as exc:
            raise DataError(f"{endpoint} did not answer a file listing for {spec} "
                            "(is it a Hugging Face endpoint or a mirror of one?)") from exc
        nxt = re.search(r'<([^>]+)>;\s*rel="next"', headers.get("link", ""))
        url = urljoin(url, nxt.group(1)) if nxt else None
    prefix = "" if kind == "models" else f"{kind}/"
    files = sorted(e["path"] for e in entries if isinstance(e, dict) and e.get("type") == "file"
                   and fnmatch.fnmatchcase(e.get("path", ""), pattern))
    if not files:
        raise DataError(f"no files match {spec} at {endpoint}")
    return [f"{endpoint}/{prefix}{repo}/resolve/{quote(rev, safe='')}/{quote(f)}"
            for f in files]


def expand(sources: Sequence[str]) -> list[str] | None:
    """The sources as files to read by range (``hf://`` globs listed); None when one of them
    cannot be (s3://, gs://... are read by DuckDB alone)."""
    out: list[str] = []
    for s in sources:
        low = s.lower()
        if low.startswith(("http://", "https://")) or "://" not in s:
            out.append(s)
        elif low.startswith("hf://"):
            out += hf_list(s)
        else:
            return None
    return out


# ---------------------------------------------------------------- reads


def auth_headers(url: str) -> dict[str, str]:
    """The user's Hugging Face token ($HF_TOKEN) for requests to the endpoint's host only."""
    token = os.environ.get("HF_TOKEN")
    endpoint = hf_endpoint(default=True)
    if token and urlsplit(url).netloc == urlsplit(endpoint).netloc:
        return {"Authorization": f"Bearer {token}"}
    return {}


def _status_message(status: int, reason: str, url: str) -> str:
    if status == 404:
        return f"not found (HTTP 404): {url}"
    if status in (401, 403):
        return f"access denied (HTTP {status}): {url} (a token goes in $HF_TOKEN)"
    if status == 416:
        return f"{url} is shorter than its footer says (HTTP 416): truncated?"
    tried = http.settings().retries
    after = f" (after {tried + 1} tries)" if tried and status in http.RETRY_STATUS else ""
    return f"HTTP {status} {reason} reading {url}{after}".replace("  ", " ")


def _get_all(url: str) -> tuple[bytes, dict[str, str]]:
    r = http.get(url, auth_headers(url))
    if r.status >= 300:
        raise DataError(_status_message(r.status, r.reason, url))
    return r.data, dict(r.headers)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def read_range(url: str, start: int | None, length: int,
               size: int | None = None) -> tuple[bytes, int]:
    """(bytes, file size): ``length`` bytes from ``start``, or the last ``length`` bytes when
    ``start`` is None. ``size``: the size the footer was read at (a change is a DataError)."""
    if "://" not in url:
        return _read_local(url, start, length, size)
    rng = f"bytes=-{length}" if start is None else f"bytes={start}-{start + length - 1}"
    r = http.get(url, {"Range": rng, **auth_headers(url)}, max_body=length)
    if r.status == 200:  # the whole file: fine only when that is what was asked
        if start not in (None, 0) or r.length > length:
            raise DataError(
                f"{urlsplit(url).netloc} does not support HTTP range requests (it answered "
                f"a range request with the whole file): {url}; mtquery reads remote data "
                "by range only, so download the files and use the local copy")
        data, total_size = r.data, r.length
    elif r.status == 206:
        m = _CONTENT_RANGE.match(r.headers.get("content-range", ""))
        if m is None or m.group(3) == "*":
            raise DataError(f"{url}: the server's range answer has no file size")
        first, total_size = int(m.group(1)), int(m.group(3))
        want = int(m.group(2)) - first + 1
        expect = max(0, total_size - length) if start is None else start
        if first != expect:
            raise DataError(f"{url}: the server answered bytes from {first:,}, not from "
                            f"{expect:,}")
        data = r.data
        if len(data) != want:
            raise DataError(f"{url} ended after {len(data):,} of {want:,} bytes "
                            "(truncated file or broken connection)")
    else:
        raise DataError(_status_message(r.status, r.reason, url))
    if size is not None and total_size != size:
        raise DataError(f"{url} changed while being read ({total_size:,} bytes, "
                        f"{size:,} when its footer was read): run again")
    return data, total_size


def _read_local(path: str, start: int | None, length: int,
                size: int | None) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as fh:
            total = os.fstat(fh.fileno()).st_size
            if size is not None and total != size:
                raise DataError(f"{path} changed while being read: run again")
            pos = max(0, total - length) if start is None else start
            fh.seek(pos)
            data = fh.read(length if start is not None else total - pos)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return data, total


# ---------------------------------------------------------------- footers


@dataclass(frozen=True)
class RowGroup:
    index: int
    rows: int
    columns: dict[str, tuple[int, int]]  # top-level column -> (first byte, bytes)
    stats: dict[str, tuple[object, object]]  # column -> (min, max) where written
    values: dict[str, int]  # leaf values of list columns (embedding: rows x dim)

    def nbytes(self, columns: Sequence[str] | None = None) -> int:
        names = self.columns if columns is None else [c for c in columns if c in self.columns]
        return sum(self.columns[c][1] for c in names)

    def ranges(self, columns: Sequence[str] | None = None) -> list[tuple[int, int]]:
        """Merged (start, end) byte ranges of the column chunks."""
        names = self.columns if columns is None else [c for c in columns if c in self.columns]
        spans = sorted((self.columns[c][0], self.columns[c][0] + self.columns[c][1])
                       for c in names)
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        return merged


@dataclass(frozen=True)
class Footer:
    source: str
    size: int
    footer: bytes = field(repr=False)  # the footer, its length and the magic
    schema: pa.Schema = field(repr=False)
    row_groups: tuple[RowGroup, ...]
    geo: dict | None

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.row_groups)

    @property
    def name(self) -> str:
        return self.source.rstrip("/").rsplit("/", 1)[-1]

    def dim(self, column: str = "embedding") -> int | None:
        """The dimension of the vector ``column`` from the type, or from the value counts when
        every row group holds exactly rows x dim values (None: not decidable from the
        footer)."""
        if column not in self.schema.names:
            return None
        try:
            et = embedding_type(self.schema.field(column).type)
        except DataError:
            return None  # int8 vectors and the like: decided by the views
        if et.dim:
            return et.dim
        dims = {g.values.get(column, 0) / g.rows for g in self.row_groups if g.rows}
        if len(dims) == 1:
            d = dims.pop()
            return int(d) if d == int(d) and d > 0 else None
        return None


def parse_footer(source: str, size: int, tail: bytes) -> Footer:
    """A Footer from the last bytes of a file (ending with the footer and ``PAR1``)."""
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        raise DataError(f"{source} is not a Parquet file, or it is truncated (no footer at its "
                        "end)")
    n = int.from_bytes(tail[-8:-4], "little")
    if n + 8 > len(tail):
        raise DataError(f"{source}: footer of {n:,} bytes does not fit a {size:,}-byte file")
    raw = tail[-(n + 8):]
    try:
        md = pq.read_metadata(pa.BufferReader(raw))
        schema = md.schema.to_arrow_schema()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{source}: unreadable Parquet footer ({exc})") from exc
    groups = []
    data_end = size - n - 8
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        cols: dict[str, list[int]] = {}
        stats: dict[str, tuple[object, object]] = {}
        values: dict[str, int] = {}
        for i in range(rg.num_columns):
            c = rg.column(i)
            top = c.path_in_schema.split(".")[0]
            start = c.data_page_offset
            if c.dictionary_page_offset is not None and 0 < c.dictionary_page_offset < start:
                start = c.dictionary_page_offset
            end = start + c.total_compressed_size
            if end > data_end:
                raise DataError(f"{source} is truncated: row group {g} reaches byte {end:,} "
                                f"but the data ends at {data_end:,}")
            span = cols.setdefault(top, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
            if "." in c.path_in_schema:
                values[top] = values.get(top, 0) + c.num_values
            st = c.statistics
            if top in PRUNE_COLUMNS and st is not None and st.has_min_max:
                stats[top] = (st.min, st.max)
        groups.append(RowGroup(g, rg.num_rows, {k: (s, e - s) for k, (s, e) in cols.items()},
                               stats, values))
    geo = None
    if md.metadata and b"geo" in md.metadata:
        try:
            geo = json.loads(md.metadata[b"geo"])
        except ValueError:
            geo = None
    return Footer(source, size, raw, schema, tuple(groups), geo)


def read_footer(source: str) -> Footer:
    tail, size = read_range(source, None, TAIL_BYTES)
    if len(tail) >= 8 and tail[-4:] == b"PAR1":
        n = int.from_bytes(tail[-8:-4], "little")
        if n + 8 > len(tail) and n + 8 <= size:
            more, _ = read_range(source, size - n - 8, n + 8 - len(tail), size)
            tail = more + tail
    return parse_footer(source, size, tail)


_CACHE: dict[str, Footer] = {}
_LOCK = threading.Lock()


def clear_footer_cache() -> None:
    """Forget the footers read so far (the next read fetches them again)."""
    with _LOCK:
        _CACHE.clear()


def read_footers(sources: Sequence[str], fresh: bool = False,
                 workers: int = WORKERS) -> list[Footer]:
    """The footers of ``sources`` (URLs or local paths), read in parallel, kept for the
    process (``fresh`` reads them again), checked: standard columns, one dimension."""
    sources = list(sources)
    todo = [s for s in sources if fresh or s not in _CACHE]
    if todo:
        for f in http.run_all(read_footer, todo, workers):
            with _LOCK:
                _CACHE[f.source] = f
    footers = [_CACHE[s] for s in sources]
    check_footers(footers)
    return footers


def check_footers(footers: Sequence[Footer], vector: str = "embedding") -> int | None:
    """DataError naming the file when one has no usable ``vector`` list (a file with standard
    columns: its ``embedding``), or another dimension than the first; returns the dimension
    (None: undecided). Files of other shapes (mtquery.io.columns) are checked by the views."""
    dim = None
    first = None
    have = [c for c in REQUIRED if footers and c in footers[0].schema.names]
    for f in footers:
        missing = [c for c in have if c not in f.schema.names]
        if missing:  # one dataset, one shape: the first file's standard columns everywhere
            raise DataError(f"{f.source}: missing standard column(s): {', '.join(missing)} "
                            f"(which {footers[0].name} has)")
        if vector not in f.schema.names:  # no ``embedding``: another shape, its views check
            if vector != "embedding":
                raise DataError(f"{f.source}: no vector column {vector!r}")
            continue
        try:
            d = f.dim(vector)
        except DataError as exc:
            raise DataError(f"{f.source}: {exc}") from exc
        if d is not None and dim is not None and d != dim:
            raise DataError(f"{f.source}: embeddings of {d} values, but {first} has {dim}; "
                            "one dataset has one dimension")
        if d is not None and dim is None:
            dim, first = d, f.name
    return dim
