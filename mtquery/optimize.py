"""``mtquery optimize``: rewrite a dataset into the layout that prunes.

- rows sorted by the Hilbert index (DuckDB spatial ``ST_Hilbert``, 16 bits a coordinate over
  the whole globe) of the fragment centre, then acquisition time, then unique_id;
- row groups of ``row_group_size`` rows (10k pruned best on 1M rows: MEASURED.md);
- a GeoParquet 1.1 ``bbox`` covering column ``struct<xmin, ymin, xmax, ymax>`` (double) and
  the ``covering`` entry in the ``geo`` metadata, so readers prune row groups by bbox stats;
- the vector as ``fixed_size_list<float32>[dim]`` (or float16 with ``--float16``); zstd;
- streaming with bounded memory: DuckDB's external sort (``memory_limit``, spilling to a
  temporary directory inside the output's staging directory) feeds a Parquet writer batch
  by batch, so inputs larger than RAM work;
- safe: the input is never overwritten and the output appears all at once (a staging
  directory renamed into place after every file is written and re-counted); a manifest
  ``_optimize.json`` records inputs, outputs, settings and timings.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtquery.datasets import Dataset, resolve
from mtquery.errors import DataError, UsageError

MANIFEST = "_optimize.json"  # leading "_": ignored by pyarrow datasets
DEFAULT_ROW_GROUP = 10_000
HILBERT_BOUNDS = "{'min_x': -180, 'min_y': -90, 'max_x': 180, 'max_y': 90}::BOX_2D"
BBOX_TYPE = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
#: columns copied as they are (after the views' normalisation), in output order
COPY = ("unique_id", "timestamp", "product_id", "grid_cell", "grid_row_u", "grid_col_r",
        "centre_lat", "centre_lon", "utm_footprint", "utm_crs", "pixel_bbox")


def output_schema(dim: int, float16: bool = False) -> pa.Schema:
    from mtquery.schema import arrow_schema

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


def _check_paths(ds: Dataset, output: Path) -> None:
    out = output.resolve()
    if out.exists() and out.is_file():
        raise UsageError(f"--output {output} is a file; give a directory that does not exist "
                         "(or is empty)")
    for f in ds.local_files:
        rf = Path(f).resolve()
        if rf == out or out in rf.parents:
            raise UsageError(f"--output {output} holds the input {f}; optimize never "
                             "overwrites its input: choose another directory")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--output {output} exists and is not empty; optimize never "
                         "overwrites: choose a new directory")


def _fingerprint(files: Sequence[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    out = []
    for f in files:
        st = Path(f).stat()
        out.append({"path": str(Path(f).resolve()), "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns, "rows": pq.ParquetFile(f).metadata.num_rows})
    return out


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
            self._w.close()
            self._w = None


def _convert(batch: pa.RecordBatch, schema: pa.Schema, dim: int) -> pa.Table:
    cols = {}
    for f in schema:
        col = batch.column(batch.schema.get_field_index(f.name))
        if f.name == "embedding":
            flat = col.flatten() if not isinstance(col, pa.ChunkedArray) else col
            values = np.asarray(flat.to_numpy(zero_copy_only=False))
            values = values.astype(f.type.value_type.to_pandas_dtype(), copy=False)
            col = pa.FixedSizeListArray.from_arrays(pa.array(values), dim)
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
             validate: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Rewrite ``inputs`` into ``output`` (a new directory). Returns the manifest."""
    import duckdb

    from mtquery.session import open_session
    from mtquery.schema import with_geo_metadata

    say = log or (lambda _m: None)
    if row_group_size < 1:
        raise UsageError(f"--row-group-size must be positive, e.g. {DEFAULT_ROW_GROUP}")
    if rows_per_file is not None and rows_per_file < row_group_size:
        raise UsageError("--rows-per-file must be at least --row-group-size")
    ds = resolve(list(inputs) if not isinstance(inputs, str) else inputs)
    if ds.remote:
        raise DataError("optimize reads local files; download the remote files first")
    output = Path(output)
    _check_paths(ds, output)
    inputs_fp = _fingerprint(ds.local_files)
    n_in = sum(f["rows"] for f in inputs_fp)
    t0 = time.perf_counter()
    out_abs = output.resolve()
    stage = out_abs.with_name(f".{out_abs.name}.tmp-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    (stage / ".spill").mkdir(parents=True)
    session = open_session(ds, threads=threads)
    try:
        con = session.con
        con.execute(f"SET memory_limit = '{_mem(memory_limit)}'")
        con.execute("SET temp_directory = ?", [str(stage / ".spill")])
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = false")
        dim = session.dim
        bbox = _geo_bbox(con)
        schema = with_geo_metadata(output_schema(dim, float16).empty_table(), bbox,
                                   covering=True).schema
        writer = _Writer(stage, schema, row_group_size, rows_per_file, "zstd",
                         compression_level)
        n_out = 0
        try:
            reader = con.execute(select_sql()).to_arrow_reader(row_group_size)
            for batch in reader:
                writer.add(_convert(batch, schema, dim))
                n_out += batch.num_rows
                if n_out % (20 * row_group_size) < row_group_size:
                    say(f"  {n_out:,} / {n_in:,} rows written")
        except duckdb.Error as exc:
            from mtquery.session import describe_error

            raise DataError(f"optimize failed: {describe_error(exc)}") from exc
        finally:
            writer.close()
        shutil.rmtree(stage / ".spill", ignore_errors=True)
        written = _fingerprint([stage / f["file"] for f in writer.files])
        if n_out != n_in or sum(f["rows"] for f in written) != n_in:
            raise DataError(f"optimize wrote {n_out} rows but the input has {n_in}; "
                            "output discarded")
        elapsed = time.perf_counter() - t0
        manifest = {
            "tool": "mtquery optimize", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime()),
            "rows": n_in, "dim": dim,
            "sort": ["ST_Hilbert(centre_lon, centre_lat, globe, 16 bits)", "acquired_at",
                     "unique_id"],
            "row_group_size": row_group_size, "rows_per_file": rows_per_file,
            "embedding": f"fixed_size_list<{'float16' if float16 else 'float32'}>[{dim}]",
            "compression": "zstd" + (f"({compression_level})" if compression_level else ""),
            "bbox_covering": "bbox", "memory_limit": memory_limit, "seconds": round(elapsed, 2),
            "inputs": inputs_fp,
            "outputs": [{**f, "bytes": w["size"]} for f, w in zip(writer.files, written,
                                                                   strict=True)],
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if validate:
            _validate(stage, say)
        if output.exists():
            output.rmdir()  # checked empty above
        os.replace(stage, out_abs)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        session.close()
    say(f"optimized {n_in:,} rows into {len(manifest['outputs'])} file(s) under {output} "
        f"in {manifest['seconds']:.1f} s")
    return manifest


def _validate(root: Path, say: Callable[[str], None]) -> None:
    from mtquery.validate import validate as run_validate

    report = run_validate([str(root)])
    failed = [c for c in report.as_dict()["checks"] if c["status"] == "FAIL"]
    if failed:
        c = failed[0]
        raise DataError(f"optimized output fails validation ({c['check']}: {c['example']}); "
                        "output discarded")
    say(f"validated {report.rows:,} rows: VALID")


def _mem(text: str) -> str:
    t = str(text).strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    unit = t[len(num):]
    try:
        float(num)
    except ValueError:
        raise UsageError(f"--memory-limit must look like 2GB or 512MB (got {text!r})") from None
    if unit not in ("", "KB", "MB", "GB", "TB", "KIB", "MIB", "GIB", "TIB", "B"):
        raise UsageError(f"--memory-limit must look like 2GB or 512MB (got {text!r})")
    return t


# ---------------------------------------------------------------- --explain


def row_groups_kept(files: Sequence[Path], bbox: Sequence[float] | None) -> tuple[int, int]:
    """(row groups whose bbox / centre statistics may intersect ``bbox``, all row groups)."""
    import pyarrow.parquet as pq

    kept = total = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        names = [md.schema.column(i).path for i in range(md.num_columns)]
        for g in range(md.num_row_groups):
            total += 1
            if bbox is None:
                kept += 1
                continue
            rg = md.row_group(g)
            stats = {}
            for i, name in enumerate(names):
                st = rg.column(i).statistics
                if st is not None and st.has_min_max:
                    stats[name] = (st.min, st.max)
            if _may_hit(stats, bbox):
                kept += 1
    return kept, total


def _may_hit(stats: dict, b: Sequence[float]) -> bool:
    min_lon, min_lat, max_lon, max_lat = b
    if "bbox.xmin" in stats:
        return not (stats["bbox.xmin"][0] > max_lon or stats["bbox.xmax"][1] < min_lon
                    or stats["bbox.ymin"][0] > max_lat or stats["bbox.ymax"][1] < min_lat)
    return True  # no covering column: DuckDB must read every row group for ST_Intersects


def explain(dataset: str | Dataset, filters, limit: int | None = None) -> str:
    """DuckDB's EXPLAIN ANALYZE of the search query, with row groups kept by statistics and
    the wall time of the query itself."""
    from mtquery.session import open_session
    from mtquery.search_sql import search_sql

    session = open_session(dataset)
    try:
        sql, params = search_sql(filters, limit, session.shape.has_bbox)
        con = session.con
        t0 = time.perf_counter()
        n = len(con.execute(sql, params).fetchall())
        ms = (time.perf_counter() - t0) * 1e3
        plan = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()
        text = "\n".join(str(r[1]) for r in plan)
        files = list(session.dataset.local_files)
        b = filters.bbox.as_list() if filters.bbox is not None else None
        head = f"-- query:\n{sql};\n-- parameters: {params!r}\n"
        if files:
            kept, total = row_groups_kept(files, b)
            head += (f"-- row groups kept by bbox statistics: {kept} / {total}"
                     + ("" if session.shape.has_bbox else
                        " (no bbox covering column: run 'mtquery optimize' to prune)") + "\n")
        head += f"-- {n} row(s) in {ms:.1f} ms\n"
        return head + text
    finally:
        with contextlib.suppress(Exception):
            session.close()
