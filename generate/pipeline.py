"""The generator: samples -> fragments -> model -> standard GeoParquet shards + manifest.

The output directory holds the shards, ``part-IIII-KKKKK.parquet`` (standard schema), and the
run's own files in ``_mtquery/`` (:mod:`mtquery.generate.layout`), so other tools read it as a
dataset. Shards are written atomically (temp file + rename) and a shard whose state file exists with
the same sample range is not recomputed, so an interrupted run, rerun with the same command,
ends with exactly the rows of an uninterrupted run. A sample that cannot be read is skipped,
recorded in its shard's state and the manifest, and makes the run end with an error.

Engines: the unit of work is the shard (:mod:`mtquery.generate.unit`: decode + fragment into
groups, model, pack; :func:`write_shard` here). :func:`generate` plans the shards, skips the
finished ones and hands the rest to an engine: :func:`run_local` (this process) or
:func:`mtquery.generate.engine_ray.run_ray` (Ray Data). Both write the same rows, the same
state files, ``_mtquery/run.json`` and ``_mtquery/manifest.json``.
"""

from __future__ import annotations

import contextlib
import platform
import time
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata

from mtquery.errors import DataError, UsageError
from mtquery.generate.family import get_family
from mtquery.generate.job import TASK, Job, Summary, write_shard  # noqa: F401  (re-exported)
from mtquery.generate.layout import open_output
from mtquery.generate.models import load_model
from mtquery.generate.registry import ModelSpec, get_model_spec
from mtquery.generate.sources import open_inputs
from mtquery.generate.unit import (  # noqa: F401  (re-exported: the pipeline's steps)
    Group,
    ShardTask,
    Timings,
    build_table,
    embed_group,
    extract_fragments,
    fragment_groups,
    pack_group,
    pack_sample,
)
from mtquery.io.manifests import GenerationManifest
from mtquery.progress import ProgressCallback, emit

PIXEL_BBOX_ORDER = "row_off,col_off,row_off+f,col_off+f (own pixels' footprint)"
ENGINES = ("local", "ray")


def run_local(job: Job, todo: list[ShardTask], summary: Summary,
              progress: ProgressCallback | None) -> dict | None:
    """The local engine: the shards one after the other in this process. Returns the model's
    provenance (None when there was nothing to do)."""
    if not todo:
        return None
    lm = load_model(job.spec.name, weights=job.weights, device=job.device,
                    mode=job.preprocessing, precision=job.precision)
    tm = summary.timings
    for task in todo:
        src = job.sources[task.input]
        parts: list[dict] = []
        failed: list[dict] = []
        for g in fragment_groups(src, job.spec, task.start, task.stop, job.batch_size, tm,
                                 thumbnails=job.thumbnails):
            t0 = time.perf_counter()
            embs = embed_group(lm, g.fragments, job.batch_size)
            t1 = time.perf_counter()
            parts += pack_group(g.samples, embs, g.thumbs)
            tm.model += t1 - t0
            tm.pack += time.perf_counter() - t1
            failed += g.failed
            if g.samples or g.failed:
                emit(progress, TASK, len(g.samples) + len(g.failed), unit="samples",
                     fragments=len(g.fragments))
        t0 = time.perf_counter()
        summary.account(write_shard(job.out, task, parts, failed, src.path, job.spec.dim,
                                    job.block()),
                        resumed=False)
        tm.write += time.perf_counter() - t0
    return {"weights": lm.weights, "weights_sha256": lm.weights_sha256, "device": lm.device}


def generate(model: str, inputs: list[str], output: str, *, weights: str | None = None,
             batch_size: int = 64, device: str | None = None, limit: int | None = None,
             preprocessing: str = "reference", precision: str = "fp32",
             product_id: str | None = None, timestamp: str | None = None,
             shard_size: int = 64, progress: ProgressCallback | None = None,
             engine: str = "local", address: str | None = None, workers: int | None = None,
             gpus_per_worker: float | None = None, connect_timeout: float = 30.0,
             thumbnails: bool = True) -> Summary:
    """Run the generator; returns a Summary (raise nothing for failed samples: the caller
    decides; the CLI exits non-zero when ``summary.samples_failed``).

    ``engine``: ``"local"`` (this process) or ``"ray"`` (:mod:`mtquery.generate.engine_ray`:
    the Ray cluster at ``address`` — ``"auto"``, ``"ray://HOST:PORT"`` or ``"HOST:PORT"`` —
    or, without one, the Ray already initialised in this process or a local Ray started and
    stopped here; ``workers`` model actors with ``gpus_per_worker`` GPUs each, default one
    per GPU when the cluster has GPUs, else CPU actors; ``connect_timeout`` seconds to reach
    ``address``). Both engines write the same rows, and either resumes the other's output.

    ``thumbnails`` (default on): a small RGB image chip per fragment in a sidecar beside each
    shard, ``_mtquery/thumbnails/`` (:mod:`mtquery.generate.thumbnails`; models whose bands
    hold neither true colour nor vv/vh get none).

    ``progress`` receives events of task ``"generate"`` in ``samples`` (the total first), each
    with a ``fragments`` counter (rows embedded or found done)."""
    t_start = time.perf_counter()
    spec = get_model_spec(model)
    if batch_size < 1 or shard_size < 1:
        raise UsageError("batch_size and shard_size must be >= 1",
                         argument="batch_size" if batch_size < 1 else "shard_size")
    if limit is not None and limit < 0:
        raise UsageError("limit must be >= 0", argument="limit")
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r} (local or ray)", argument="engine")
    ray_opts = None
    if engine == "ray":
        from mtquery.generate.ray_cluster import RayOptions

        ray_opts = RayOptions.checked(address, workers, gpus_per_worker, connect_timeout,
                                      device=device, precision=precision)
        if ray_opts.client:  # the whole call runs on the head node
            from mtquery.generate.ray_cluster import run_through_client

            return run_through_client(
                generate,
                {"model": model, "inputs": list(inputs), "output": output, "weights": weights,
                 "batch_size": batch_size, "device": device, "limit": limit,
                 "preprocessing": preprocessing, "precision": precision,
                 "product_id": product_id, "timestamp": timestamp, "shard_size": shard_size,
                 "workers": workers, "gpus_per_worker": gpus_per_worker,
                 "thumbnails": thumbnails}, progress, ray_opts)
    else:
        for name, value in (("address", address), ("workers", workers),
                            ("gpus_per_worker", gpus_per_worker)):
            if value is not None:
                raise UsageError(f"{name} is an option of engine='ray'", argument=name)
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
    summary = Summary(samples_total=sum(t.stop - t.start for t in plan),
                      engine={"name": engine})
    emit(progress, TASK, total=summary.samples_total, unit="samples")
    todo, shards = [], {}
    for task in plan:
        st = out.finished(task.name, task.start, task.stop)
        if st is None:
            todo.append(task)
            continue
        summary.account(st, resumed=True)
        shards[task] = st
        emit(progress, TASK, task.stop - task.start, unit="samples", fragments=st["rows"])
    job = Job(spec, srcs, out, weights, device, preprocessing, precision, batch_size,
              thumbnails)
    if not todo:  # nothing to do: no model, no Ray
        made = None
    elif ray_opts is not None:
        from mtquery.generate.engine_ray import run_ray

        made = run_ray(job, todo, summary, progress, ray_opts)
    else:
        made = run_local(job, todo, summary, progress)
    for task in todo:
        st = out.finished(task.name, task.start, task.stop)
        if st is None:
            raise DataError(f"shard {task.name} was not written; rerun to resume")
        shards[task] = st
    summary.elapsed_s = time.perf_counter() - t_start
    out.write_manifest(_manifest(spec, made, weights, preprocessing, precision, device,
                                 described, limit, summary, [shards[t] for t in plan]))
    return summary


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("mtquery", "numpy", "pyarrow", "shapely", "pyproj", "rasterio", "torch",
                "timm", "open_clip_torch", "transformers", "ray"):
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            out[pkg] = importlib_metadata.version(pkg)
    return out


def _settings(spec: ModelSpec, weights: str | None, mode: str, precision: str,
              shard_size: int, inputs: list[dict]) -> dict:
    return {"model": spec.name, "weights": weights or "default", "preprocessing_mode": mode,
            "precision": precision, "shard_size": shard_size,
            "inputs": [{k: v for k, v in d.items() if k != "samples"} for d in inputs]}


def _plan(srcs: list, shard_size: int, limit: int | None) -> list[ShardTask]:
    """The work, in order, cut after ``limit`` samples."""
    plan = []
    budget = limit if limit is not None else float("inf")
    for ii, s in enumerate(srcs):
        for k, start in enumerate(range(0, len(s), shard_size)):
            stop = min(start + shard_size, len(s))
            take = int(min(stop - start, budget))
            if take <= 0:
                break
            plan.append(ShardTask(ii, k, start, start + take))
            budget -= take
    return plan


def _manifest(spec: ModelSpec, made: dict | None, weights: str | None, mode: str,
              precision: str, device: str | None, described: list[dict], limit: int | None,
              summary: Summary, shards: list[dict]) -> GenerationManifest:
    """Provenance and counts of the run (``made`` — weights, their sha256 and the device the
    model ran on — is None when every shard was done before)."""
    return GenerationManifest.from_dict({
        "schema": GenerationManifest.SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": spec.name, "family": spec.family, "dim": spec.dim,
                  "bands": list(spec.bands), "fragment_size": spec.fragment_size,
                  "weights_name": spec.weights_name, "weights_revision": spec.weights_revision,
                  "weights": made["weights"] if made else (weights or "default"),
                  "weights_sha256": made["weights_sha256"] if made else None},
        "preprocessing": {"key": spec.preprocessing, "mode": mode,
                          "description": get_family(spec.family).preprocessing[
                              spec.preprocessing]},
        "precision": precision, "device": made["device"] if made else device,
        "engine": summary.engine,
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
    }, "generation manifest")


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
