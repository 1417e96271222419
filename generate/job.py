"""One call of :func:`mtquery.generate.pipeline.generate` as the engines see it: the
:class:`Job`, its :class:`Summary` and :func:`write_shard` (shared by the local and the Ray
engine, so neither imports the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from mtquery.generate.layout import OutputDir
from mtquery.generate.registry import ModelSpec
from mtquery.generate.sources import Source
from mtquery.generate.thumbnails import write_sidecar
from mtquery.generate.unit import ShardTask, Timings, build_table
from mtquery.io.embmeta import block as embedding_block
from mtquery.io.embmeta import registry_weights, with_block
from mtquery.io.fsio import atomic_path

TASK = "generate"


@dataclass
class Summary:
    samples_total: int = 0
    samples_done: int = 0  # embedded in this run
    samples_resumed: int = 0  # found complete from an earlier run
    samples_failed: int = 0
    fragments: int = 0  # rows written in this run
    rows_total: int = 0  # rows in the output
    failed: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0
    timings: Timings = field(default_factory=Timings)
    engine: dict = field(default_factory=dict)  # which engine ran, and how

    def account(self, state: dict, *, resumed: bool) -> None:
        """Count one finished shard (written now, or found done when ``resumed``)."""
        n_failed = len(state["failed"])
        ok = state["stop"] - state["start"] - n_failed
        if resumed:
            self.samples_resumed += ok
        else:
            self.samples_done += ok
            self.fragments += state["rows"]
        self.samples_failed += n_failed
        self.failed += state["failed"]
        self.rows_total += state["rows"]


def write_shard(out: OutputDir, task: ShardTask, parts: list[dict], failed: list[dict],
                input_path: str, dim: int, block: dict | None = None) -> dict:
    """Write a shard's rows atomically (none: no file), then its state; returns the state.
    Parts that carry thumbnails put them in the shard's sidecar first (written before the
    shard, so a finished shard always has its chips). ``block``: the embedding metadata
    block the shard carries (``Job.block``; mtquery.io.embmeta)."""
    table = build_table(parts, dim)
    if block is not None:
        table = table.replace_schema_metadata(with_block(table.schema, block).metadata)
    shard_f = out.shard(task.name)
    thumbs = [t for p in parts for t in p.get("thumbnail", ())]
    if thumbs and len(thumbs) == table.num_rows:
        write_sidecar(shard_f, table.column("unique_id").to_pylist(), thumbs)
    else:
        write_sidecar(shard_f, [], [])  # no chips (another model, or thumbnails off)
    if table.num_rows:
        with atomic_path(shard_f) as tmp:
            pq.write_table(table, tmp, compression="zstd", row_group_size=100_000)
    else:
        shard_f.unlink(missing_ok=True)
    st = {"start": task.start, "stop": task.stop, "rows": table.num_rows, "failed": failed,
          "input": input_path, "file": shard_f.name if table.num_rows else None}
    out.write_state(task.name, st)
    return st


@dataclass
class Job:
    """What an engine needs to run the shards of one call of :func:`generate`."""

    spec: ModelSpec
    sources: list[Source]
    out: OutputDir
    weights: str | None
    device: str | None
    preprocessing: str
    precision: str
    batch_size: int
    thumbnails: bool = True

    def block(self) -> dict:
        """The embedding metadata block of the shards: the model's registry name, its
        weights (the file given, else the published name @ pinned revision), no
        normalisation (vectors as the model gives them), the Major TOM 10 km grid. A local
        weights file is named without its folder (no path of this machine in the output)."""
        s = self.spec
        if self.weights:
            w = str(self.weights)
            weights = w if "://" in w or w.startswith("hf-hub:") else Path(w).name
        else:
            weights = registry_weights(s.name)
        return embedding_block(s.dim, "float32", model=s.name, weights=weights,
                               normalisation="none")
