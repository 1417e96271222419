"""``mtquery optimize``: rewrite a dataset into the layout that prunes.

- rows sorted by the Hilbert index (DuckDB spatial ``ST_Hilbert``, 16 bits a coordinate over
  the whole globe) of the fragment centre, then acquisition time, then unique_id;
- row groups of ``row_group_size`` rows (10k pruned best on 1M rows, benchmarks/knn_bench.py);
- a GeoParquet 1.1 ``bbox`` covering column ``struct<xmin, ymin, xmax, ymax>`` (double) and
  the ``covering`` entry in the ``geo`` metadata, so readers prune row groups by bbox stats;
- the vector as ``fixed_size_list<float32>[dim]`` (or float16 with ``float16=True``); zstd;
- streaming with bounded memory: DuckDB's external sort (``memory_limit``, spilling to a
  temporary directory inside the output's staging directory) feeds a Parquet writer batch
  by batch, so inputs larger than RAM work;
- safe: the input is never overwritten and the output appears all at once: it is staged in
  ``.mtquery-staging/`` beside the output (``mtquery.io.staging``: hidden, never read as data,
  swept by the next run when a run is killed) and renamed into place after every file is
  written and re-counted; on failure the staging is discarded. A full disk and a second run
  publishing the same output first are one-line DataErrors. A manifest
  ``_optimize.json`` records inputs, outputs, settings and timings.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.errors import DataError, UsageError
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.embmeta import Origin, origin_of, with_block
from mtquery.io.staging import discard, new_staging, publish, tidy
from mtquery.progress import ProgressCallback, emit
from mtquery.vectors.store import fingerprint

MANIFEST = "_optimize.json"  # leading "_": ignored by pyarrow datasets
DEFAULT_ROW_GROUP = 10_000
HILBERT_BOUNDS = "{'min_x': -180, 'min_y': -90, 'max_x': 180, 'max_y': 90}::BOX_2D"
BBOX_TYPE = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
#: columns copied as they are (after the views' normalisation), in output order
COPY = ("unique_id", "timestamp", "product_id", "grid_cell", "grid_row_u", "grid_col_r",
        "centre_lat", "centre_lon", "utm_footprint", "utm_crs", "pixel_bbox")


def output_schema(dim: int, float16: bool = False) -> pa.Schema:
    from mtquery.standard.schema import arrow_schema

    base = arrow_schema(dim)
    fields = []
    for f in base:
        if f.name == "embedding" and float16:
            f = pa.field("embedding", pa.list_(pa.float16(), dim), metadata=f.metadata)
        fields.append(f)
    fields.append(pa.field("bbox", BBOX_TYPE, metadata={
        "description": "GeoParquet 1.1 bbox covering of geometry"}))
    return pa.schema(fields)


def select_sql(sort: bool = True) -> str:
    cols = ",\n  ".join(COPY)
    sql = (
        f"SELECT\n  {cols},\n  embedding,\n  ST_AsWKB(geometry) AS geometry,\n"
        "  struct_pack(xmin := ST_XMin(geometry), ymin := ST_YMin(geometry),\n"
        "              xmax := ST_XMax(geometry), ymax := ST_YMax(geometry)) AS bbox\n"
        "FROM embeddings"
    )
    if sort:
        sql += (f"\nORDER BY ST_Hilbert(centre_lon, centre_lat, {HILBERT_BOUNDS}),\n"
                "  acquired_at NULLS LAST, unique_id")
    return sql


def check_paths(ds: Dataset, output: Path) -> None:
    out = output.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {output} is a file; give a directory that does not exist "
                         "(or is empty)", "output")
    for f in ds.local_files:
        rf = Path(f).resolve()
        if rf == out or out in rf.parents:
            raise UsageError(f"output {output} holds the input {f}; optimize never "
                             "overwrites its input: choose another directory", "output")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"output {output} exists and is not empty; optimize never "
                         "overwrites: choose a new directory", "output")


def _no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk: ENOSPC from Python or Arrow,
    or DuckDB's spill / write error text."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _Writer:
    """Parquet files of at most ``rows_per_file`` rows, row groups of exactly
    ``row_group_size`` rows (the last one of a file may be shorter)."""

    def __init__(self, root: Path, schema: pa.Schema, row_group_size: int,
                 rows_per_file: int | None, compression: str, level: int | None) -> None:
        self.root, self.schema = root, schema
        self.rg = row_group_size
        self.per_file = rows_per_file
        self.compression, self.level = compression, level
        self.files: list[dict] = []
        self._w = None
        self._rows_in_file = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def _open(self) -> None:
        import pyarrow.parquet as pq

        name = f"part-{len(self.files):05d}.parquet"
        self._w = pq.ParquetWriter(
            self.root / name, self.schema, compression=self.compression,
            compression_level=self.level, write_statistics=True,
            use_dictionary=["timestamp", "product_id", "grid_cell", "utm_crs"],
            write_page_index=True)
        self.files.append({"file": name, "rows": 0, "row_groups": 0})
        self._rows_in_file = 0

    def _flush(self, table: pa.Table) -> None:
        if self._w is None:
            self._open()
        self._w.write_table(table, row_group_size=self.rg)
        self.files[-1]["rows"] += table.num_rows
        self.files[-1]["row_groups"] += -(-table.num_rows // self.rg)
        self._rows_in_file += table.num_rows
        if self.per_file and self._rows_in_file >= self.per_file:
            self._w.close()
            self._w = None

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.rg:
            buf = pa.concat_tables(self._pending)
            room = self.rg
            if self.per_file:
                room = min(self.per_file - self._rows_in_file, self.rg) or self.rg
            self._flush(buf.slice(0, room))
            rest = buf.slice(room)
            self._pending, self._pending_rows = [rest], rest.num_rows

    def close(self) -> None:
        if self._pending_rows:
            self._flush(pa.concat_tables(self._pending))
        self._pending, self._pending_rows = [], 0
        if self._w is not None:
            w, self._w = self._w, None
            w.close()

    def abort(self) -> None:
        """Drop what is pending and close the open file, ignoring its errors (after a
        failure: the staging is discarded, and a second error must not hide the first)."""
        self._pending, self._pending_rows = [], 0
        w, self._w = self._w, None
        if w is not None:
            with contextlib.suppress(Exception):
                w.close()


def _convert(batch: pa.RecordBatch, schema: pa.Schema, dim: int) -> pa.Table:
    cols = {}
    for f in schema:
        col = batch.column(batch.schema.get_field_index(f.name))
        if f.name == "embedding":
            flat = col.flatten() if not isinstance(col, pa.ChunkedArray) else col
            values = np.asarray(flat.to_numpy(zero_copy_only=False))
            values = values.astype(f.type.value_type.to_pandas_dtype(), copy=False)
            mask = None
            if col.null_count:  # a null vector stays null (flatten left its slot out)
                valid = np.asarray(col.is_valid())
                full = np.zeros((len(col), dim), dtype=values.dtype)
                full[valid] = values.reshape(-1, dim)
                values, mask = full.reshape(-1), pa.array(~valid)
            col = pa.FixedSizeListArray.from_arrays(pa.array(values), dim, mask=mask)
        elif f.name == "geometry":
            col = col.cast(pa.binary()) if col.type != pa.binary() else col
            if isinstance(col.type, pa.ExtensionType):
                col = col.storage
        else:
            col = col.cast(f.type)
        cols[f.name] = col
    return pa.table(cols, schema=schema)


def _geo_bbox(con) -> list[float] | None:
    row = con.execute("SELECT min(ST_XMin(geometry)), min(ST_YMin(geometry)), "
                      "max(ST_XMax(geometry)), max(ST_YMax(geometry)) FROM embeddings"
                      ).fetchone()
    return None if row is None or row[0] is None else [float(v) for v in row]


def optimize(inputs: Sequence[str] | str, output: str | Path,
             row_group_size: int = DEFAULT_ROW_GROUP, float16: bool = False,
             rows_per_file: int | None = None, memory_limit: str = "2GB",
             threads: int | None = None, compression_level: int | None = None,
             validate: bool = True, progress: ProgressCallback | None = None) -> dict:
    """Rewrite ``inputs`` into ``output`` (a new or empty directory). Returns the manifest.

    ``progress`` receives ``optimizing`` row events (``total`` = the input's rows), the
    validation's events and one-line status messages. Raises UsageError for bad
    arguments, DataError for unreadable input, a full disk ("no space left on device writing
    OUTPUT") or an output another run published first; nothing is published on failure."""
    if row_group_size < 1:
        raise UsageError(f"row_group_size must be positive, e.g. {DEFAULT_ROW_GROUP}",
                         "row_group_size")
    if rows_per_file is not None and rows_per_file < row_group_size:
        raise UsageError(f"rows_per_file must be at least row_group_size ({row_group_size})",
                         "rows_per_file")
    mem = _mem(memory_limit)
    ds = resolve(list(inputs) if not isinstance(inputs, str) else inputs)
    if ds.remote:
        raise DataError("optimize reads local files; download the remote files first")
    output = Path(output)
    check_paths(ds, output)
    inputs_fp = fingerprint(ds.local_files)
    n_in = sum(f["rows"] for f in inputs_fp)
    t0 = time.perf_counter()
    out_abs = output.resolve()
    try:
        stage = new_staging(out_abs.parent, out_abs.name)
    except OSError as exc:
        raise DataError(f"cannot write beside {output}: {exc.strerror or exc}") from exc
    try:
        manifest = write_stage(ds, stage, n_in, inputs_fp, t0, row_group_size, float16,
                                rows_per_file, mem, memory_limit, threads, compression_level,
                                validate, progress)
        publish(stage, out_abs, name=output)
    except BaseException as exc:
        discard(stage)
        if isinstance(exc, Exception) and _no_space(exc):
            raise DataError(f"no space left on device writing {output}; nothing was "
                            "published: free some space or choose another output") from exc
        raise
    tidy(out_abs.parent)
    emit(progress, "optimizing", message=(
        f"optimized {n_in:,} rows into {len(manifest['outputs'])} file(s) under {output} "
        f"in {manifest['seconds']:.1f} s"))
    return manifest


def write_stage(ds: Dataset, stage: Path, n_in: int, inputs_fp: list[dict], t0: float,
                 row_group_size: int, float16: bool, rows_per_file: int | None, mem: str,
                 memory_limit: str, threads: int | None, compression_level: int | None,
                 validate: bool, progress: ProgressCallback | None,
                 origin: Origin | None = None) -> dict:
    """Write every output file and the manifest into ``stage``; returns the manifest.
    The files carry the embedding metadata block (``mtquery.io.embmeta``) of ``origin``,
    what is known of the data's source files (default: the input files themselves, their
    generation manifest, their catalog entry)."""
    import duckdb

    from mtquery.query.session import describe_error, open_session
    from mtquery.standard.schema import with_geo_metadata

    spill = stage / ".spill"
    spill.mkdir()
    session = open_session(ds, threads=threads)
    try:
        con = session.con
        con.execute(f"SET memory_limit = '{mem}'")
        con.execute("SET temp_directory = ?", [str(spill)])
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = false")
        dim = session.dim
        bbox = _geo_bbox(con)
        schema = with_geo_metadata(output_schema(dim, float16).empty_table(), bbox,
                                   covering=True).schema
        blk = (origin or origin_of(ds.local_files, ds.entry.model if ds.entry else None)
               ).block(dim, "float16" if float16 else "float32")
        schema = with_block(schema, blk)
        writer = _Writer(stage, schema, row_group_size, rows_per_file, "zstd",
                         compression_level)
        emit(progress, "optimizing", total=n_in, unit="rows")
        n_out = 0
        try:
            reader = con.execute(select_sql()).to_arrow_reader(row_group_size)
            for batch in reader:
                writer.add(_convert(batch, schema, dim))
                n_out += batch.num_rows
                emit(progress, "optimizing", batch.num_rows, total=n_in, unit="rows")
            writer.close()
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, duckdb.Error) and not _no_space(exc):
                raise DataError(f"optimize failed: {describe_error(exc)}") from exc
            raise
    finally:
        session.close()
    shutil.rmtree(spill, ignore_errors=True)
    written = fingerprint([stage / f["file"] for f in writer.files])
    if n_out != n_in or sum(f["rows"] for f in written) != n_in:
        raise DataError(f"optimize wrote {n_out} rows but the input has {n_in}; "
                        "output discarded")
    manifest = {
        "tool": "mtquery optimize", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime()),
        "rows": n_in, "dim": dim,
        "sort": ["ST_Hilbert(centre_lon, centre_lat, globe, 16 bits)", "acquired_at",
                 "unique_id"],
        "row_group_size": row_group_size, "rows_per_file": rows_per_file,
        "embedding": f"fixed_size_list<{'float16' if float16 else 'float32'}>[{dim}]",
        "compression": "zstd" + (f"({compression_level})" if compression_level else ""),
        "bbox_covering": "bbox", "embedding_block": blk, "memory_limit": memory_limit,
        "seconds": round(time.perf_counter() - t0, 2),
        "inputs": inputs_fp,
        "outputs": [{**f, "bytes": w["size"]} for f, w in zip(writer.files, written,
                                                               strict=True)],
    }
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if validate:
        _validate(stage, progress)
    return manifest


#: checks whose failures optimize reports but publishes: vectors are copied as they are, and
#: a vector without direction (zero, NaN, inf) is the input's, handled by one rule (knn skips
#: it, the SQL cosine_distance gives NULL)
NOTED_CHECKS = ("vectors",)


def _validate(root: Path, progress: ProgressCallback | None) -> None:
    from mtquery.io.validate import validate as run_validate

    report = run_validate([str(root)], progress=progress)
    checks = report.as_dict()["checks"]
    failed = [c for c in checks if c["status"] == "FAIL" and c["check"] not in NOTED_CHECKS]
    if failed:
        c = failed[0]
        raise DataError(f"optimized output fails validation ({c['check']}: {c['example']}); "
                        "output discarded")
    notes = [f"{c['check']}: {c['failures']:,} ({c['status']})" for c in checks
             if c["status"] in ("FAIL", "WARN")]
    # the verdict is validate's own: null / NaN vectors make the output INVALID there and here
    detail = f" ({'; '.join(notes)}; see mtquery validate)" if notes else ""
    message = (f"validated {report.rows:,} rows: VALID" + (" with notes" if notes else "")
               + detail if report.ok else
               f"validated {report.rows:,} rows: INVALID{detail}; published anyway: vectors "
               "are copied as they are, knn skips those without a direction")
    emit(progress, "optimizing", message=message)


def _mem(text: str) -> str:
    t = str(text).strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    unit = t[len(num):]
    try:
        float(num)
    except ValueError:
        raise UsageError(f"memory_limit must look like 2GB or 512MB (got {text!r})",
                         "memory_limit") from None
    if unit not in ("", "KB", "MB", "GB", "TB", "KIB", "MIB", "GIB", "TIB", "B"):
        raise UsageError(f"memory_limit must look like 2GB or 512MB (got {text!r})",
                         "memory_limit")
    return t
