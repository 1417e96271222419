"""``rows.arrow``: the result columns of a vector store as an Arrow IPC file of fixed-size
record batches, one checksum block per batch (``mtquery.vectors.integrity``), so the metadata
of a few rows is read by checking and decoding only the batches that hold them."""

from __future__ import annotations

from collections.abc import Iterable
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
    before it is decoded with the known ``schema`` (the file's own is not trusted)."""
    sums = integrity.read_sums(path)
    if wanted.size and int(wanted[-1]) >= sums.blocks - 1:
        raise integrity.Damaged(path, "fewer record batches than rows")
    out = []
    try:
        with pa.memory_map(str(path)) as src:
            buf = src.read_buffer()
            integrity.verify_blocks(sums, memoryview(buf), wanted)
            for b in wanted:
                lo, hi = int(sums.offsets[b]), int(sums.offsets[b + 1])
                skip = 8 if lo == 0 else 0  # the first block starts with the file magic
                reader = pa.ipc.MessageReader.open_stream(buf.slice(lo + skip, hi - lo - skip))
                msg = reader.read_next_message()
                while msg.type != "record batch":
                    msg = reader.read_next_message()
                out.append(pa.ipc.read_record_batch(msg, schema))
    except (pa.ArrowException, OSError, StopIteration) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise integrity.Damaged(path, f"unreadable: {detail}") from exc
    return out
