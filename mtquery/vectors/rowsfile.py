"""``rows.arrow``: the result columns of a vector store as an Arrow IPC file of fixed-size
record batches, one checksum block per batch (``mtquery.vectors.integrity``), so the metadata
of a few rows is read by checking and decoding only the batches that hold them."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.vectors import integrity


def write_batches(tables: Iterable[pa.Table], target: Path, schema: pa.Schema,
                  batch_rows: int) -> None:
    """Write ``tables`` (of ``schema``) as record batches of exactly ``batch_rows`` rows (the
    last one shorter) and the checksums of each batch."""
    cuts: list[int] = []
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        pending: list[pa.Table] = []
        held = 0

        def flush(final: bool) -> None:
            nonlocal pending, held
            t = pa.concat_tables(pending).combine_chunks() if pending else schema.empty_table()
            full = t.num_rows if final else t.num_rows // batch_rows * batch_rows
            for lo in range(0, full, batch_rows):
                cuts.append(sink.tell())
                writer.write_batch(t.slice(lo, batch_rows).combine_chunks().to_batches()[0])
            pending = [t.slice(full)] if full < t.num_rows else []
            held = t.num_rows - full

        for t in tables:
            pending.append(t)
            held += t.num_rows
            if held >= batch_rows:
                flush(final=False)
        flush(final=True)
        cuts.append(sink.tell())  # the footer starts here
    integrity.write_sums(target, cuts, block_bytes=1 << 62)  # one block per record batch


def read_batches(path: Path, wanted: np.ndarray, schema: pa.Schema) -> list[pa.RecordBatch]:
    """Record batches ``wanted`` (sorted batch numbers), each checked against its checksum
    before it is decoded; the footer (the schema and the batches' offsets Arrow reads) is
    checked when the file is opened (once per process and version of the file)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise integrity.Damaged(path, exc.strerror or "missing") from exc
    try:
        reader, buf, sums = _open(str(path), st.st_ino, st.st_mtime_ns, st.st_size)
        if wanted.size and int(wanted[-1]) >= reader.num_record_batches:
            raise integrity.Damaged(path, "fewer record batches than rows")
        integrity.verify_blocks(sums, memoryview(buf), wanted)
        out = [reader.get_batch(int(b)) for b in wanted]
    except (pa.ArrowException, OSError) as exc:
        raise integrity.Damaged(path, f"unreadable: {_line(exc)}") from exc
    if out and not out[0].schema.equals(schema):
        raise integrity.Damaged(path, "record batches of another schema")
    return out


@lru_cache(maxsize=16)
def _open(path: str, _ino: int, _mtime_ns: int, _size: int
          ) -> tuple[pa.ipc.RecordBatchFileReader, pa.Buffer, integrity.Sums]:
    sums = integrity.read_sums(path)
    with pa.memory_map(path) as src:
        buf = src.read_buffer()  # keeps the mapping alive after the file object closes
    integrity.verify_blocks(sums, memoryview(buf), [sums.blocks - 1])  # the footer
    reader = pa.ipc.open_file(buf)
    if reader.num_record_batches != sums.blocks - 1:
        raise integrity.Damaged(path, f"{reader.num_record_batches} record batches, "
                                f"{sums.blocks - 1} written")
    return reader, buf, sums


integrity.FORGET.append(_open.cache_clear)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
