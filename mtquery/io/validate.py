"""``mtquery validate``: check files against the Major TOM embedding standard
(docs/standard.md, "Output schema").

Streams each file row group by row group, record batch by record batch (bounded memory);
cross-file checks (one dimension, unique ids) are accumulated as it goes. Every check reports
PASS / FAIL (WARN for what queries survive but should be fixed) with a count and an example:

- ``readable``: every data page decodes (a corrupt page fails its row group, the rest is
  still checked); a file whose footer cannot be read is a one-line DataError;
- ``vectors``: no null, NaN or infinite vector (corrupt data);
- ``zero_vectors`` (WARN): zero vectors, e.g. fragments of no data (outside a scene: the
  reference embeds them too; the spectral model gives them a zero vector). Like NaN ones they
  have no direction: the one rule everywhere (``mtquery.vectors.store.invalid_rows``) is that knn
  skips them and says how many, and the SQL ``cosine_distance`` gives NULL;
- ``timestamp`` (WARN): every timestamp parses as S2 style ``20200717T105031`` or ISO 8601
  the way the ``embeddings`` view parses it; placeholders (``unknown``, empty, null,
  impossible dates like ``2020-02-30``) give a NULL ``acquired_at`` that time filters never
  match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtquery.errors import DataError
from mtquery.io.columns import STANDARD, Roles
from mtquery.io.datasets import resolve
from mtquery.io.roles import roles_of
from mtquery.io.validate_checks import TimeParser, check_batch, check_geo, one_line, pixel_order
from mtquery.io.validate_report import BATCH_ROWS, CHECKS, DEFAULT_TOLERANCE_KM, Check, Report  # noqa: F401
from mtquery.progress import ProgressCallback, emit
from mtquery.standard.schema import check_columns


def validate(paths: Sequence[str] | str, tolerance_km: float = DEFAULT_TOLERANCE_KM,
             progress: ProgressCallback | None = None) -> Report:
    """Validate local files (paths, directories or globs) against the standard."""
    ds = resolve(list(paths) if not isinstance(paths, str) else paths)
    if ds.remote:
        raise DataError("validate reads local files; download the remote files first")
    report = Report(files=[str(f) for f in ds.local_files])
    files = []
    for f in ds.local_files:
        try:
            files.append((str(f), pq.ParquetFile(f)))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {f}: {one_line(exc)}") from exc
    total_rows = sum(pf.metadata.num_rows for _, pf in files)
    emit(progress, "validating", total=total_rows, unit="rows")
    roles = roles_of(ds) if total_rows else STANDARD
    if not roles.standard:
        _as_info(report, roles)
    ids: list[np.ndarray] = []
    id_files: list[str] = []  # the file of each batch of ids
    order_sample: list[pa.Table] = []
    parser = TimeParser()
    try:
        for path, pf in files:
            schema = pf.schema_arrow
            check_geo(schema.metadata, path, report.checks["geo_metadata"])
            problems = check_columns(schema) if roles.standard else []
            report.checks["columns"].checked += 1
            if problems:
                report.checks["columns"].fail(len(problems), f"{path}: {problems[0]}")
                report.rows += pf.metadata.num_rows
                emit(progress, "validating", pf.metadata.num_rows, total=total_rows,
                     unit="rows")
                continue
            first = 0
            for batch in _batches(pf, path, report, progress, total_rows):
                if not roles.standard:
                    first, batch = first + batch.num_rows, derived_batch(
                        batch, roles, path, first, [f for f, _ in files])
                check_batch(batch, path, report, tolerance_km, parser)
                ids.append(batch.column("unique_id").to_numpy(zero_copy_only=False))
                id_files.append(path)
                if len(order_sample) < 8:
                    order_sample.append(pa.Table.from_batches([batch]).select(
                        ["grid_cell", "product_id", "timestamp", "pixel_bbox", "centre_lat",
                         "centre_lon"]))
    finally:
        parser.close()
    if not roles.standard and roles.time is None:
        report.checks["timestamp"] = Check("timestamp", skipped="no time column")
    _check_dims(report)
    _check_unique(report, ids, id_files)
    report.pixel_bbox_order = pixel_order(order_sample)
    return report


#: the standard columns a batch is checked on
CHECKED = ("unique_id", "timestamp", "product_id", "grid_cell", "grid_row_u", "grid_col_r",
           "geometry", "centre_lat", "centre_lon", "pixel_bbox")


def _as_info(report: Report, roles: Roles) -> None:
    """A file of another shape (mtquery.io.columns): what is derived, and its GeoParquet
    metadata, are INFO, not failures; the footprint may be larger than a grid cell (WARN)."""
    cols = report.checks["columns"]
    cols.level = "INFO"
    cols.fail(len(roles.derived), "read through column roles " + ", ".join(
        f"{k}={v}" for k, v in roles.mapping().items()) + "; derived: "
        + ", ".join(roles.derived))
    report.checks["geo_metadata"].level = "INFO"
    report.checks["geometry_in_cell"].level = "WARN"


def derived_batch(batch: pa.RecordBatch, roles: Roles, path: str, first: int,
                  sources: list[str]) -> pa.RecordBatch:
    """The standard columns of a batch of another shape, as the views derive them, with its
    vectors as they are."""
    from mtquery.io.standardize import standard_rows

    t = standard_rows(pa.Table.from_batches([batch]), roles, CHECKED, path, first, sources)
    t = t.append_column("embedding", batch.column(roles.vector))
    return t.combine_chunks().to_batches(max_chunksize=max(1, batch.num_rows))[0] \
        if batch.num_rows else pa.RecordBatch.from_pylist([], schema=t.schema)


def _batches(pf: pq.ParquetFile, path: str, report: Report,
             progress: ProgressCallback | None, total_rows: int):
    """Record batches of every row group; a row group whose pages do not decode fails the
    ``readable`` check for the rows not read, and the next row group is read."""
    check = report.checks["readable"]
    check.checked += 1
    for g in range(pf.metadata.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[g]):
                done += batch.num_rows
                report.rows += batch.num_rows
                emit(progress, "validating", batch.num_rows, total=total_rows, unit="rows")
                yield batch
        except (pa.ArrowException, OSError) as exc:
            check.fail(max(rows - done, 1), f"{path}: row group {g} cannot be read "
                       f"({one_line(exc)})")
            report.rows += rows - done
            emit(progress, "validating", rows - done, total=total_rows, unit="rows")


def _check_dims(report: Report) -> None:
    """More than one vector length: the rows of every length but the commonest fail."""
    ch = report.checks["dimension"]
    if len(report.dim_rows) > 1:
        order = sorted(report.dim_rows, key=lambda d: (-report.dim_rows[d], d))
        detail = ", ".join(f"{d} ({report.dim_rows[d]:,} rows, e.g. {report.dim_example[d]})"
                           for d in order)
        ch.fail(sum(report.dim_rows[d] for d in order[1:]),
                f"mixed embedding dimensions: {detail}")


def _check_unique(report: Report, ids: list[np.ndarray], files: list[str]) -> None:
    ch = report.checks["unique_id"]
    if not ids:
        ch.skipped = "no rows"
        return
    arr = pa.chunked_array([pa.array(a, pa.string()) for a in ids])
    ch.checked = len(arr)
    if arr.null_count:
        ch.fail(arr.null_count, "null unique_id values")
    counts = pc.value_counts(arr.drop_null())
    dup = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dup):
        value = dup[0]["values"].as_py()
        where = sorted({f for f, a in zip(files, ids) if np.any(a == value)})
        copies = (f" (in {len(where)} files: {', '.join(where[:3])}"
                  + (", ..." if len(where) > 3 else "") + "; the same rows in several files?)"
                  if len(where) > 1 else f" (in {where[0]})" if where else "")
        ch.fail(int(pc.sum(dup.field("counts")).as_py()) - len(dup),
                f"unique_id {value} appears {dup[0]['counts'].as_py()} times{copies}")
