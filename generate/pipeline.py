"""The generator: samples -> fragments -> model -> standard GeoParquet shards + manifest.

The output directory holds the shards, ``part-IIII-KKKKK.parquet`` (standard schema), and the
run's own files in ``_mtquery/`` (:mod:`mtquery.generate.layout`), so other tools read it as a
dataset. Shards are written atomically (temp file + rename) and a shard whose state file exists with
the same sample range is not recomputed, so an interrupted run, rerun with the same command,
ends with exactly the rows of an uninterrupted run. A sample that cannot be read is skipped,
recorded in its shard's state and the manifest, and makes the run end with an error.
"""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from mtquery.errors import DataError, UsageError
from mtquery.fsio import atomic_path
from mtquery.generate.family import LoadedModel, get_family
from mtquery.generate.fastids import fast_unique_ids as unique_ids
from mtquery.generate.fragment import fragment_footprints, fragment_grid
from mtquery.generate.layout import open_output
from mtquery.generate.models import forward, load_model
from mtquery.generate.registry import ModelSpec, get_model_spec
from mtquery.generate.sample import CORE_PX_10M, Sample, SampleError
from mtquery.generate.sources import open_inputs
from mtquery.progress import ProgressCallback, emit
from mtquery.schema import arrow_schema, embedding_array, with_geo_metadata

TASK = "generate"
PIXEL_BBOX_ORDER = "row_off,col_off,row_off+f,col_off+f (own pixels' footprint)"


@dataclass
class Timings:
    decode: float = 0.0
    fragment: float = 0.0
    model: float = 0.0
    pack: float = 0.0
    write: float = 0.0

    def as_dict(self) -> dict:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


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


def extract_fragments(image: np.ndarray, pixel_bbox: np.ndarray) -> np.ndarray:
    """(n, bands, f, f) fragments of a (bands, H, W) image, gathered in one indexing op."""
    f = int(pixel_bbox[0, 2] - pixel_bbox[0, 0])
    win = np.lib.stride_tricks.sliding_window_view(image, (f, f), axis=(1, 2))
    return np.ascontiguousarray(win[:, pixel_bbox[:, 0], pixel_bbox[:, 1]].transpose(1, 0, 2, 3))


def pack_sample(sample: Sample, pixel_bbox: np.ndarray, emb: np.ndarray) -> dict[str, object]:
    """Column arrays of one sample's rows, computed vectorised over its fragments."""
    fp = fragment_footprints(pixel_bbox, sample.origin, sample.pixel_size, sample.crs)
    n = len(pixel_bbox)
    ts, pid = [sample.timestamp] * n, [sample.product_id] * n
    return {
        "unique_id": unique_ids(fp.geometry, ts, pid, emb),
        "embedding": emb,
        "timestamp": ts,
        "product_id": pid,
        "grid_cell": [sample.grid_cell] * n,
        "grid_row_u": np.full(n, sample.grid_row_u, dtype=np.int16),
        "grid_col_r": np.full(n, sample.grid_col_r, dtype=np.int16),
        "geometry": shapely.to_wkb(fp.geometry),
        "centre_lat": fp.centre_lat.astype(np.float32),
        "centre_lon": fp.centre_lon.astype(np.float32),
        "utm_footprint": shapely.to_wkt(fp.utm_geometry, rounding_precision=-1),
        "utm_crs": [sample.crs] * n,
        "pixel_bbox": pixel_bbox,
    }


def build_table(parts: list[dict[str, object]], dim: int) -> pa.Table:
    schema = arrow_schema(dim)
    arrays = []
    for fld in schema:
        vals = [p[fld.name] for p in parts]
        if fld.name == "embedding":
            arr = embedding_array(np.concatenate(vals) if vals else np.zeros((0, dim), np.float32))
        elif fld.name == "pixel_bbox":
            pb = np.concatenate(vals) if vals else np.zeros((0, 4), np.int64)
            arr = pa.ListArray.from_arrays(np.arange(0, 4 * len(pb) + 1, 4, dtype=np.int32),
                                           pa.array(pb.reshape(-1).astype(np.int64)))
        elif isinstance(vals[0] if vals else None, np.ndarray):
            arr = pa.array(np.concatenate(vals), type=fld.type)
        else:
            arr = pa.array([x for v in vals for x in v], type=fld.type)
        arrays.append(arr)
    table = pa.Table.from_arrays(arrays, schema=schema)
    bbox = None
    if table.num_rows:
        geoms = shapely.from_wkb(np.concatenate([np.asarray(p["geometry"]) for p in parts]))
        bbox = shapely.total_bounds(geoms).tolist()
    return with_geo_metadata(table, bbox=bbox)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("mtquery", "numpy", "pyarrow", "shapely", "pyproj", "rasterio", "torch",
                "timm", "open_clip_torch", "transformers"):
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            out[pkg] = importlib_metadata.version(pkg)
    return out


def _settings(spec: ModelSpec, weights: str | None, mode: str, precision: str,
              shard_size: int, inputs: list[dict]) -> dict:
    return {"model": spec.name, "weights": weights or "default", "preprocessing_mode": mode,
            "precision": precision, "shard_size": shard_size,
            "inputs": [{k: v for k, v in d.items() if k != "samples"} for d in inputs]}


def _plan(srcs: list, shard_size: int, limit: int | None) -> list[tuple[int, int, int, int]]:
    """The work: (input index, shard index, start, stop), in order, cut after ``limit``
    samples."""
    plan = []
    budget = limit if limit is not None else float("inf")
    for ii, s in enumerate(srcs):
        for k, start in enumerate(range(0, len(s), shard_size)):
            stop = min(start + shard_size, len(s))
            take = int(min(stop - start, budget))
            if take <= 0:
                break
            plan.append((ii, k, start, start + take))
            budget -= take
    return plan


def _flush(lm: LoadedModel, pending: list, parts: list, batch_size: int, summary: Summary,
           progress: ProgressCallback | None) -> None:
    """Embed the pending samples' fragments (batches span samples) and pack their rows."""
    if not pending:
        return
    t0 = time.perf_counter()
    frags = np.concatenate([p[2] for p in pending])
    embs = np.concatenate([forward(lm, frags[i:i + batch_size])
                           for i in range(0, len(frags), batch_size)])
    t1 = time.perf_counter()
    j = 0
    for smp, spb, fr in pending:
        parts.append(pack_sample(smp, spb, embs[j:j + len(fr)]))
        j += len(fr)
    summary.timings.model += t1 - t0
    summary.timings.pack += time.perf_counter() - t1
    emit(progress, TASK, len(pending), unit="samples", fragments=len(frags))
    pending.clear()


def _embed_shard(lm: LoadedModel, source, start: int, stop: int, batch_size: int,
                 summary: Summary, progress: ProgressCallback | None
                 ) -> tuple[list[dict], list[dict]]:
    """(row parts, failed samples) of samples start..stop-1 of one input."""
    spec = lm.spec
    pb = fragment_grid(CORE_PX_10M, spec.fragment_size)  # other sizes: computed per sample
    parts: list[dict] = []
    failed: list[dict] = []
    pending: list[tuple[Sample, np.ndarray, np.ndarray]] = []
    n_pending = 0
    t0 = time.perf_counter()
    for _i, smp, err in source.samples(start, stop, spec.bands):
        try:
            if err is not None:
                raise SampleError(err)
            img = smp.stack(spec.bands)
            t1 = time.perf_counter()
            summary.timings.decode += t1 - t0
            if img.shape[1] < spec.fragment_size:
                raise SampleError(f"image of {img.shape[1]} px is smaller than the "
                                  f"{spec.fragment_size} px fragment")
            spb = pb if img.shape[1] == CORE_PX_10M else fragment_grid(img.shape[1],
                                                                       spec.fragment_size)
            fr = extract_fragments(img, spb)
            summary.timings.fragment += time.perf_counter() - t1
        except SampleError as exc:
            failed.append({"grid_cell": smp.grid_cell, "product_id": smp.product_id,
                           "source": smp.ref, "error": str(exc)})
            emit(progress, TASK, 1, unit="samples", fragments=0)
            t0 = time.perf_counter()
            continue
        pending.append((smp, spb, fr))
        n_pending += len(fr)
        if n_pending >= batch_size:
            _flush(lm, pending, parts, batch_size, summary, progress)
            n_pending = 0
        t0 = time.perf_counter()
    _flush(lm, pending, parts, batch_size, summary, progress)
    return parts, failed


def generate(model: str, inputs: list[str], output: str, *, weights: str | None = None,
             batch_size: int = 64, device: str | None = None, limit: int | None = None,
             preprocessing: str = "reference", precision: str = "fp32",
             product_id: str | None = None, timestamp: str | None = None,
             shard_size: int = 64, progress: ProgressCallback | None = None) -> Summary:
    """Run the generator; returns a Summary (raise nothing for failed samples: the caller
    decides; the CLI exits non-zero when ``summary.samples_failed``).

    ``progress`` receives events of task ``"generate"`` in ``samples`` (the total first), each
    with a ``fragments`` counter (rows embedded or found done)."""
    t_start = time.perf_counter()
    spec = get_model_spec(model)
    if batch_size < 1 or shard_size < 1:
        raise UsageError("batch_size and shard_size must be >= 1",
                         argument="batch_size" if batch_size < 1 else "shard_size")
    if limit is not None and limit < 0:
        raise UsageError("limit must be >= 0", argument="limit")
    srcs = open_inputs(list(inputs), product_id=product_id, timestamp=timestamp)
    for s in srcs:
        missing = [b for b in spec.bands if b not in s.bands]
        if missing:
            raise UsageError(
                f"model {spec.name!r} needs bands {','.join(spec.bands)}; input {s.path} has "
                f"{','.join(sorted(s.bands)) or 'none'} (missing {','.join(missing)})",
                argument="inputs")
    described = [s.describe() for s in srcs]
    out = open_output(output, _settings(spec, weights, preprocessing, precision, shard_size,
                                        described))
    plan = _plan(srcs, shard_size, limit)
    summary = Summary(samples_total=sum(b - a for _, _, a, b in plan))
    emit(progress, TASK, total=summary.samples_total, unit="samples")
    lm = None
    shards = []
    for ii, k, start, stop in plan:
        name = f"part-{ii:04d}-{k:05d}"
        st = out.finished(name, start, stop)
        if st is not None:
            summary.samples_resumed += stop - start - len(st["failed"])
            summary.samples_failed += len(st["failed"])
            summary.failed += st["failed"]
            summary.rows_total += st["rows"]
            shards.append(st)
            emit(progress, TASK, stop - start, unit="samples", fragments=st["rows"])
            continue
        if lm is None:
            lm = load_model(spec.name, weights=weights, device=device, mode=preprocessing,
                            precision=precision)
        parts, failed = _embed_shard(lm, srcs[ii], start, stop, batch_size, summary, progress)
        t0 = time.perf_counter()
        table = build_table(parts, spec.dim)
        shard_f = out.shard(name)
        if table.num_rows:
            with atomic_path(shard_f) as tmp:
                pq.write_table(table, tmp, compression="zstd", row_group_size=100_000)
        else:
            shard_f.unlink(missing_ok=True)
        st = {"start": start, "stop": stop, "rows": table.num_rows, "failed": failed,
              "input": srcs[ii].path, "file": shard_f.name if table.num_rows else None}
        out.write_state(name, st)
        summary.timings.write += time.perf_counter() - t0
        shards.append(st)
        summary.samples_done += stop - start - len(failed)
        summary.samples_failed += len(failed)
        summary.failed += failed
        summary.fragments += table.num_rows
        summary.rows_total += table.num_rows
    summary.elapsed_s = time.perf_counter() - t_start
    out.write_manifest(_manifest(spec, lm, weights, preprocessing, precision, device,
                                 described, limit, summary, shards))
    return summary


def _manifest(spec: ModelSpec, lm: LoadedModel | None, weights: str | None, mode: str,
              precision: str, device: str | None, described: list[dict], limit: int | None,
              summary: Summary, shards: list[dict]) -> dict:
    """Provenance and counts of the run (``lm`` is None when every shard was done before)."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": spec.name, "family": spec.family, "dim": spec.dim,
                  "bands": list(spec.bands), "fragment_size": spec.fragment_size,
                  "weights_name": spec.weights_name, "weights_revision": spec.weights_revision,
                  "weights": lm.weights if lm else (weights or "default"),
                  "weights_sha256": lm.weights_sha256 if lm else None},
        "preprocessing": {"key": spec.preprocessing, "mode": mode,
                          "description": get_family(spec.family).preprocessing[
                              spec.preprocessing]},
        "precision": precision, "device": lm.device if lm else device,
        "fragmenting": {"overlap": 0.1, "border_shift": True,
                        "pixel_bbox_order": PIXEL_BBOX_ORDER},
        "versions": _versions(),
        "inputs": described,
        "limit": limit,
        "counts": {"samples": summary.samples_total,
                   "samples_ok": summary.samples_done + summary.samples_resumed,
                   "samples_resumed": summary.samples_resumed,
                   "samples_failed": summary.samples_failed, "rows": summary.rows_total,
                   "shards": sum(1 for s in shards if s["rows"])},
        "failed": summary.failed,
        "shards": [s["file"] for s in shards if s["rows"]],
        "timings_s": summary.timings.as_dict(),
        "elapsed_s": round(summary.elapsed_s, 3),
    }


def summary_line(s: Summary) -> str:
    return (f"{s.samples_done} samples embedded, {s.samples_resumed} already done, "
            f"{s.samples_failed} failed; {s.fragments} rows written ({s.rows_total} in output) "
            f"in {s.elapsed_s:.1f}s")


def check_failures(s: Summary) -> None:
    if s.samples_failed:
        first = s.failed[0]
        raise DataError(f"{s.samples_failed} sample(s) failed and were skipped, e.g. "
                        f"{first['grid_cell']} / {first['product_id']}: {first['error']} "
                        "(all listed in the run's _mtquery/manifest.json)")
