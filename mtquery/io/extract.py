"""``mtquery extract``: copy a region and time window of a dataset (remote or local) into a
local dataset in the optimised layout.

1. the footers (``mtquery.io.remote``) say which row groups may hold a fragment of the region
   (``mtquery.io.cost.plan``, the same ranges the SQL prunes by); a read above the budget is
   refused before it starts, as for every remote command;
2. per source file, its row groups are fetched with parallel range reads (8 MiB pieces) into a
   sparse local copy, the rows whose geometry intersects the box and whose acquisition lies in
   the window are kept (the search's own WHERE clause, run by DuckDB on those row groups) and
   written as that file's part, with a marker saying it is done;
3. the parts go through ``mtquery.io.optimize``'s writer (Hilbert order, bbox covering column,
   fixed-size vectors, validated) and the result is published with one rename.

Everything is staged in ``.mtquery-staging/`` beside the output. A rerun after a kill adopts
the killed run's staging when it asked for the same rows of the same files, and skips the
source files already done (a part is only ever counted with its marker, so no row is written
twice); staging that does not match is swept as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mtquery.errors import DataError, UsageError
from mtquery.io.columns import STANDARD, Roles
from mtquery.io.cost import Budget, FilePlan, ReadPlan, check, parse_max_read, plan
from mtquery.io.datasets import Dataset, resolve
from mtquery.io.embmeta import Origin, origin_of
from mtquery.io.http import run_all
from mtquery.io.optimize import DEFAULT_ROW_GROUP, MANIFEST, check_paths, write_stage
from mtquery.io.remote import Footer, expand, read_footers, read_range
from mtquery.io.staging import STAGING, discard, new_staging, pid_alive, publish, sweep, tidy
from mtquery.progress import ProgressCallback, emit
from mtquery.query.filters import BBox, Filters, where_sql
from mtquery.vectors.store import fingerprint

PIECE = 8 << 20
WORKERS = 8
REQUEST = "request.json"
EXTRACT_MANIFEST = "_extract.json"
_STAGE_PID = re.compile(r"-(\d+)-[0-9a-f]{8}$")


class NothingToExtract(DataError):
    """No fragment of the dataset lies in the region and window."""


def extract_plan(dataset: Dataset | str, filters: Filters) -> ReadPlan:
    """What extracting ``filters`` from ``dataset`` would read (footers only)."""
    ds = resolve(dataset)
    files = expand(ds.sources)
    if files is None:
        raise DataError(f"{ds.spec}: extract reads local files, http(s):// or hf:// by range",
                        "dataset")
    from mtquery.io.roles import roles_of

    footers = read_footers(files, fresh=True)  # first: mtquery's own reads name the URL
    # a file of another shape: its centre columns (if any) are not the derived centres, so
    # no row group is skipped by their statistics (the views filter the rows read)
    scope = filters if roles_of(ds).standard else None
    return plan(footers, scope, "extract", what="extract")


def extract(dataset: Dataset | str, output: str | Path, bbox: str | BBox | None = None,
            start: str | None = None, end: str | None = None, cell: str | None = None, *,
            row_group_size: int = DEFAULT_ROW_GROUP, workers: int = WORKERS,
            index: bool = False, max_read: str | int | None = None,
            allow_full_scan: bool = False, validate: bool = True,
            progress: ProgressCallback | None = None, tool: str = "mtquery extract") -> dict:
    """Copy the fragments intersecting ``bbox`` acquired in [``start``, ``end``] (UTC,
    inclusive) in grid ``cell`` into ``output`` (a new directory) in the optimised layout;
    ``index`` builds the ANN index after. Returns the manifest (``_extract.json``).

    Remote reads are refused above the budget (``max_read``, default 2 GB or 25 % of the
    dataset; ``allow_full_scan``) with ``mtquery.io.cost.ReadRefused``."""
    filters = Filters.of(bbox, start, end, cell)
    if workers < 1:
        raise UsageError(f"workers must be at least 1 (got {workers})", "workers")
    if row_group_size < 1:
        raise UsageError(f"row_group_size must be positive, e.g. {DEFAULT_ROW_GROUP}",
                         "row_group_size")
    budget = parse_max_read(max_read)
    budget = Budget(budget.max_bytes, budget.max_share, allow_full_scan)
    ds = resolve(dataset)
    output = Path(output)
    check_paths(ds, output)
    t0 = time.perf_counter()
    read = extract_plan(ds, filters)
    if ds.remote:
        check(read, budget)
    if read.row_groups == 0:
        raise NothingToExtract(f"no row group of {ds.name} can hold a fragment of the region "
                               "and window asked for (from the footers' statistics); nothing "
                               "was written")
    out_abs = output.resolve()
    out_abs.parent.mkdir(parents=True, exist_ok=True)
    request = _request(read, filters)
    stage = _adopt(out_abs.parent, f"extract-{out_abs.name}", request)
    resumed = stage is not None
    try:
        if stage is None:
            stage = new_staging(out_abs.parent, f"extract-{out_abs.name}")
            (stage / REQUEST).write_text(json.dumps(request, indent=2), encoding="utf-8")
        manifest = _run(ds, read, filters, stage, output, out_abs, row_group_size, workers,
                        validate, progress, t0, resumed, tool)
    except BaseException as exc:
        # keep finished parts for a rerun to adopt (hidden, swept when nobody does); not when
        # another run published the output meanwhile: a rerun refuses to write over it, so
        # nothing would adopt them (a full copy of the region left behind)
        if stage is not None and (isinstance(exc, NothingToExtract) or _taken(out_abs)
                                  or not any((stage / "parts").glob("*.done"))):
            discard(stage)
        raise
    discard(stage)
    tidy(out_abs.parent)
    if index:
        from mtquery.vectors.build import build_index

        manifest["index"] = str(build_index(str(output), progress=progress))
    return manifest


def _taken(out: Path) -> bool:
    """Whether ``out`` now holds another run's output (a non-empty directory, or a file)."""
    try:
        return out.is_file() or (out.is_dir() and any(out.iterdir()))
    except OSError:
        return False


def _request(read: ReadPlan, filters: Filters) -> dict:
    """What decides the rows: the files (with their sizes) and the filters."""
    return {"version": 1,
            "files": [[f.source, f.size] for f in _footers(read)],
            "bbox": filters.bbox.as_list() if filters.bbox else None,
            "start": filters.time.start.isoformat() if filters.time.start else None,
            "end": filters.time.end.isoformat() if filters.time.end else None,
            "cell": filters.cell}


def _footers(read: ReadPlan) -> list[Footer]:
    return [f.footer for f in read.files]


def _adopt(parent: Path, name: str, request: dict) -> Path | None:
    """The staging of a killed run that asked for the same request, renamed to this run."""
    folder = parent / STAGING
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return None
    for entry in entries:
        m = _STAGE_PID.search(entry.name)
        if not entry.name.startswith(name + "-") or m is None or pid_alive(int(m.group(1))):
            continue
        if entry.name[len(name) + 1: m.start()]:  # another output whose name extends ours
            continue
        try:
            if json.loads((entry / REQUEST).read_text(encoding="utf-8")) != request:
                continue
        except (OSError, ValueError):
            continue
        mine = folder / f"{name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(entry, mine)
        except OSError:
            continue  # another run adopted it first
        sweep(parent)
        return mine
    return None


def _run(ds: Dataset, read: ReadPlan, filters: Filters, stage: Path, output: Path,
         out_abs: Path, row_group_size: int, workers: int, validate: bool,
         progress: ProgressCallback | None, t0: float, resumed: bool,
         tool: str = "mtquery extract") -> dict:
    parts_dir = stage / "parts"
    parts_dir.mkdir(exist_ok=True)
    from mtquery.io.roles import roles_of

    meter = _Meter(progress, read.bytes)
    done, fetched = [], 0
    roles = roles_of(ds)
    for j, fp in enumerate(read.files):
        marker = parts_dir / f"{j:05d}.done"
        if marker.is_file():
            info = json.loads(marker.read_text(encoding="utf-8"))
            meter.skip(info["planned"])
            done.append(info)
            continue
        info = _extract_file(fp, j, filters, parts_dir, workers, meter, roles, ds.sources)
        fetched += info["bytes_read"]
        done.append(info)
    meter.finish()
    parts = [str(parts_dir / d["part"]) for d in done if d["rows"]]
    rows = sum(d["rows"] for d in done)
    if not rows:
        raise NothingToExtract(f"no fragment of {ds.name} intersects the region in the window "
                               "asked for; nothing was written")
    out_stage = stage / "out"
    if out_stage.exists():  # a killed run's half-written layout: write it again
        import shutil

        shutil.rmtree(out_stage)
    out_stage.mkdir()
    manifest = write_stage(resolve(parts), out_stage, rows, fingerprint(parts), t0,
                            row_group_size, False, None, "2GB", "2GB", None, None, validate,
                            progress, origin=_origin(ds, read, roles))
    manifest["inputs"] = [{"file": d["source"], "row_groups": d["row_groups"],
                           "rows": d["rows"]} for d in done]
    (out_stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    extract_manifest = {
        "tool": tool, "dataset": ds.spec, "sources": list(ds.sources),
        "bbox": filters.bbox.as_list() if filters.bbox else None,
        "start": filters.time.start.isoformat() if filters.time.start else None,
        "end_exclusive": filters.time.end.isoformat() if filters.time.end else None,
        "cell": filters.cell, "rows": rows, "files_read": len(done),
        "row_groups_read": read.row_groups, "bytes_planned": read.bytes,
        "bytes_read": fetched, "resumed": resumed, "dataset_bytes": read.total_bytes,
        "seconds": round(time.perf_counter() - t0, 2), "layout": MANIFEST,
        "outputs": manifest["outputs"],
    }
    (out_stage / EXTRACT_MANIFEST).write_text(json.dumps(extract_manifest, indent=2) + "\n",
                                              encoding="utf-8")
    publish(out_stage, out_abs, name=output)
    emit(progress, "extracting", message=(
        f"extracted {rows:,} rows from {read.row_groups} row group(s) of {len(done)} file(s) "
        f"into {output} ({extract_manifest['seconds']:.1f} s"
        + (", resumed" if resumed else "") + ")"))
    return extract_manifest


def _origin(ds: Dataset, read: ReadPlan, roles: Roles) -> Origin:
    """What the output's embedding metadata block says of the source files: their blocks
    (footers), the model mtquery knows, the column roles of a file of another shape."""
    footers = _footers(read)
    return origin_of([f.source for f in footers], ds.entry.model if ds.entry else None,
                     metadata=[f.schema.metadata for f in footers],
                     roles=None if roles.standard else roles.mapping())


class _Meter:
    """Fetch progress in MB (rates and ETA by the renderer)."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self.progress, self.sent, self.bytes = progress, 0, 0
        self.total = max(1, -(-total // 1_000_000))
        emit(progress, "fetching", total=self.total, unit="MB")

    def add(self, n: int) -> None:
        self.bytes += n
        mb = min(self.total, self.bytes // 1_000_000)
        if mb > self.sent:
            emit(self.progress, "fetching", mb - self.sent, total=self.total, unit="MB")
            self.sent = mb

    def skip(self, n: int) -> None:
        self.add(n)

    def finish(self) -> None:
        if self.total > self.sent:
            emit(self.progress, "fetching", self.total - self.sent, total=self.total, unit="MB")
            self.sent = self.total


def _pieces(fp: FilePlan) -> list[tuple[int, int]]:
    out = []
    for g in fp.groups:
        for s, e in fp.footer.row_groups[g].ranges():
            out += [(p, min(e, p + PIECE)) for p in range(s, e, PIECE)]
    return out


def _extract_file(fp: FilePlan, j: int, filters: Filters, parts_dir: Path, workers: int,
                  meter: _Meter, roles: Roles = STANDARD, sources: Sequence[str] = ()
                  ) -> dict:
    """Fetch the file's row groups, keep the rows of the region, write part ``j`` (a file
    of another shape: its standard columns, derived as the views derive them)."""
    f = fp.footer
    sparse, cand = parts_dir / f"{j:05d}.src", parts_dir / f"{j:05d}.cand.parquet"
    part, tmp = parts_dir / f"{j:05d}.parquet", parts_dir / f"{j:05d}.parquet.tmp"
    pieces = _pieces(fp)
    fd = os.open(sparse, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    lock, closed = threading.Lock(), []
    try:
        os.ftruncate(fd, f.size)
        os.pwrite(fd, b"PAR1", 0)
        os.pwrite(fd, f.footer, f.size - len(f.footer))

        def fetch(piece: tuple[int, int]) -> int:
            data, _ = read_range(f.source, piece[0], piece[1] - piece[0], f.size)
            with lock:  # never into a closed (or reused) descriptor after Ctrl-C
                if not closed:
                    os.pwrite(fd, data, piece[0])
            return len(data)

        run_all(fetch, pieces, workers, each=meter.add)
    finally:
        with lock:
            closed.append(True)
            os.close(fd)
    source = pq.ParquetFile(sparse)
    if roles.standard:
        with pq.ParquetWriter(cand, source.schema_arrow) as w:
            for g in fp.groups:
                w.write_table(source.read_row_group(g))
    else:
        write_standard(source, fp.groups, cand, roles, f.source, sources or (f.source,))
    rows = _kept_rows(cand, filters)
    kept = 0
    if len(rows):
        candidates = pq.ParquetFile(cand)
        with pq.ParquetWriter(tmp, candidates.schema_arrow) as w:
            offset = 0
            for g in range(candidates.num_row_groups):
                n = candidates.metadata.row_group(g).num_rows
                lo, hi = offset, offset + n
                sel = rows[(rows >= lo) & (rows < hi)] - lo
                if len(sel):
                    w.write_table(candidates.read_row_group(g).take(pa.array(sel)))
                    kept += len(sel)
                offset = hi
        os.replace(tmp, part)
    for p in (sparse, cand):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    info = {"source": f.source, "part": part.name, "rows": kept,
            "row_groups": list(fp.groups), "planned": sum(e - s for s, e in pieces),
            "bytes_read": sum(e - s for s, e in pieces)}
    (parts_dir / f"{j:05d}.done").write_text(json.dumps(info), encoding="utf-8")
    emit(meter.progress, "extracting", message=(
        f"{f.name}: {len(fp.groups)} row group(s), {kept:,} of {fp.rows:,} rows in the region"))
    return info


def write_standard(source: pq.ParquetFile, groups: Sequence[int], target: Path, roles: Roles,
                   name: str, sources: Sequence[str]) -> int:
    """Row groups ``groups`` of a file of another shape (named ``name`` in a dataset of
    ``sources``) as standard rows in ``target``: every standard column, derived as the views
    derive them (ids keep the source's row numbers). Returns the rows written."""
    from mtquery.io.standardize import standard_rows
    from mtquery.standard.schema import COLUMNS

    md = source.metadata
    starts = [0]
    for g in range(md.num_row_groups):
        starts.append(starts[-1] + md.row_group(g).num_rows)
    writer, n = None, 0
    try:
        for g in groups:
            t = standard_rows(source.read_row_group(g), roles, list(COLUMNS), name,
                              starts[g], sources)
            writer = writer or pq.ParquetWriter(target, t.schema)
            writer.write_table(t)
            n += t.num_rows
    finally:
        if writer is not None:
            writer.close()
    return n


def _kept_rows(cand: Path, filters: Filters):
    """Row numbers (in ``cand``) of the rows passing the filters: the search's WHERE clause."""
    import numpy as np

    from mtquery.query.search import check_times, run
    from mtquery.query.session import open_session

    session = open_session(str(cand))
    try:
        check_times(session, filters)
        where, params = where_sql(filters, session.shape.has_bbox, session.shape.reach_km)
        table = run(session, f"SELECT source_row FROM embeddings\n{where}\nORDER BY 1", params)
    finally:
        session.close()
    return np.asarray(table.column("source_row").to_numpy(), dtype=np.int64)
