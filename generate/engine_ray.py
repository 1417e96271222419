"""The Ray engine of the generator (``generate(..., engine="ray")``; the ``cluster`` extra).

The shards left to do stream through Ray Data; every stage calls the steps of
:mod:`mtquery.generate.unit`, so the rows are those of the local engine:

1. one block per shard (an input and its sample range);
2. CPU tasks (``flat_map``): on the worker, read the shard's Core parquet row groups (local,
   ``https://``, ``hf://``) or scene windows, decode, cut the Core windows and fragments
   (:func:`~mtquery.generate.unit.fragment_groups`), then run the family's preprocessing on
   each model batch: one row per group of whole samples;
3. an actor pool of ``workers`` model actors (``gpus_per_worker`` GPUs each, CPU actors
   without GPUs), the model loaded once per actor, embeds each batch of a group;
4. CPU tasks pack the rows (footprints, ``unique_id``);
5. the driver gathers a shard's groups and writes it with
   :func:`~mtquery.generate.pipeline.write_shard` (atomic write + state) once all are in.

A retried task or restarted actor (Ray does both) can deliver a group twice: the driver keeps
the first copy of each (shard, group), and a shard is written once, so rows are never
duplicated; what Ray gives up on stays undone and is picked up by the rerun.

The preprocessing needs what loading the model gives (DINOv2's image processor): one CPU task
loads the model first, returns it without its network and its weights' provenance, and fails
the run early, in one line, when the weights cannot be found. Reaching the cluster, Ray Client
and errors: :mod:`mtquery.generate.ray_cluster`.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from typing import Any

import numpy as np

from mtquery.errors import DataError, UsageError
from mtquery.generate.family import LoadedModel
from mtquery.generate.job import TASK, Job, Summary, write_shard
from mtquery.generate.ray_cluster import RayOptions, connect, import_ray, unwrap
from mtquery.generate.registry import get_model_spec
from mtquery.generate.unit import ShardTask, Timings, fragment_groups, pack_group
from mtquery.progress import ProgressCallback, emit

#: A file named like a shard in this directory kills the decode task of that shard once, after
#: its first group (tests of Ray's retries; unset in normal runs).
KILL_ENV = "MTQUERY_RAY_KILL_ONCE"


# ---------------------------------------------------------------- worker side

_SOURCES: dict[str, Any] = {}


def _source(ref: tuple[str, Any]) -> Any:
    """A worker's source of ``ref`` (opened once per worker process)."""
    kind, val = ref
    if kind == "scene":
        return val  # a SceneInput travels whole (its cells were found on the driver)
    if val not in _SOURCES:
        from mtquery.generate.core_parquet import CoreInput

        _SOURCES[val] = CoreInput(val)
    return _SOURCES[val]


def _preprocessor(model: str, mode: str, processor: Any) -> LoadedModel:
    """The model's preprocessing on CPU: a LoadedModel without its network."""
    from mtquery.generate.family import get_family

    spec = get_model_spec(model)
    return LoadedModel(spec, get_family(spec.family), None, "cpu", "", None,
                       processor=processor, mode=mode)


def _probe(model: str, weights: str | None, mode: str) -> dict:
    """Load the model once on CPU: its processor and the weights' provenance."""
    from mtquery.generate.models import clear_cache, load_model

    lm = load_model(model, weights=weights, device="cpu", mode=mode)
    out = {"processor": lm.processor, "weights": lm.weights, "weights_sha256": lm.weights_sha256}
    clear_cache()
    return out


def _decode(item: dict, cfg: dict) -> Any:
    """Stage 2: the groups of one shard, fragments preprocessed batch by batch."""
    task = ShardTask(*item["task"])
    spec = get_model_spec(cfg["model"])
    pre = _preprocessor(cfg["model"], cfg["mode"], cfg["processor"])
    bs = cfg["batch_size"]
    kill = os.environ.get(KILL_ENV)
    tm = Timings()
    before = dict(tm.__dict__)
    for g in fragment_groups(_source(cfg["sources"][task.input]), spec, task.start, task.stop,
                             bs, tm, thumbnails=cfg.get("thumbnails", True)):
        t0 = time.perf_counter()
        inputs = [_numpy(pre.family.preprocess(pre, g.fragments[i:i + bs]))
                  for i in range(0, len(g.fragments), bs)]
        tm.preprocess += time.perf_counter() - t0
        spent = {k: v - before[k] for k, v in tm.__dict__.items()}  # since the previous row
        before = dict(tm.__dict__)
        x = np.concatenate(inputs) if inputs else np.zeros((0,), np.float32)
        meta = {"samples": g.samples, "failed": g.failed, "timings": spent, "shape": x.shape,
                "thumbs": g.thumbs}
        yield {"shard": item["index"], "group": g.index, "last": g.last,
               "inputs": x.reshape(-1),  # flat: one tensor type for all rows, empty ones too
               "meta": pickle.dumps(meta, protocol=5)}
        if kill and g.index == 0 and os.path.exists(marker := os.path.join(kill, task.name)):
            os.unlink(marker)
            os._exit(1)


def _numpy(x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = x.cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


class Embedder:
    """Stage 3: one model per actor (``cfg`` set on a subclass made per run)."""

    cfg: dict = {}

    def __init__(self) -> None:
        from mtquery.generate.models import load_model

        c = self.cfg
        self.lm = load_model(c["model"], weights=c["weights"], device=c["device"],
                             mode=c["mode"], precision=c["precision"])

    def __call__(self, row: dict) -> dict:
        t0 = time.perf_counter()
        shape = pickle.loads(row["meta"])["shape"]
        x, bs = row.pop("inputs").reshape(shape), self.cfg["batch_size"]
        emb = [_forward(self.lm, x[i:i + bs]) for i in range(0, len(x), bs)]
        row["emb"] = np.concatenate(emb) if emb else np.zeros((0, self.lm.spec.dim), np.float32)
        row["model_s"] = time.perf_counter() - t0
        row["sha256"], row["device"] = self.lm.weights_sha256 or "", self.lm.device
        return row


def _forward(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    """:func:`mtquery.generate.models.forward` after the preprocessing (done on CPU)."""
    if not lm.family.torch:
        return np.asarray(lm.family.forward(lm, x), dtype=np.float32)
    import warnings

    import torch

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only array from Ray: only read
        t = torch.from_numpy(np.ascontiguousarray(x)).to(lm.device)
        if lm.dtype is not None and lm.dtype != torch.float32:
            t = t.to(lm.dtype)
        return lm.family.forward(lm, t).float().cpu().numpy()


def _pack(row: dict) -> dict:
    """Stage 4: the rows of a group (pickled parts), its failures and timings."""
    meta = pickle.loads(row["meta"])
    t0 = time.perf_counter()
    parts = pack_group(meta["samples"], row["emb"], meta.get("thumbs"))
    tm = meta["timings"]
    tm.update(model=row["model_s"], pack=time.perf_counter() - t0)
    payload = {"parts": parts, "failed": meta["failed"], "timings": tm,
               "samples": len(meta["samples"]), "fragments": len(row["emb"])}
    return {"shard": row["shard"], "group": row["group"], "last": row["last"],
            "sha256": row["sha256"], "device": row["device"],
            "payload": pickle.dumps(payload, protocol=5)}


# ---------------------------------------------------------------- driver side


def _source_ref(src: Any) -> tuple[str, Any]:
    return ("scene", src) if getattr(src, "kind", "") == "scene" else ("core", src.path)


def run_ray(job: Job, todo: list[ShardTask], summary: Summary,
            progress: ProgressCallback | None, opts: RayOptions) -> dict:
    """Run the shards ``todo`` on Ray; returns the model's provenance."""
    ray = import_ray()
    started = connect(ray, opts)
    try:
        res = ray.cluster_resources()
        gpus = opts.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if res.get("GPU", 0) >= 1 else 0.0
        if gpus and not res.get("GPU", 0):
            raise UsageError(f"gpus_per_worker={gpus:g} but the Ray cluster has no GPUs",
                             argument="gpus_per_worker")
        cpus = float(res.get("CPU", 1))
        workers = opts.workers or (max(1, int(res["GPU"] // gpus)) if gpus
                                   else max(1, int(cpus) - 1))
        summary.engine = {"name": "ray",
                          "address": opts.address or ("local" if started else "existing"),
                          "workers": workers, "gpus_per_worker": gpus,
                          "ray": ray.__version__, "cluster_cpus": cpus,
                          "cluster_gpus": float(res.get("GPU", 0))}
        return _execute(ray, job, todo, summary, progress, gpus, workers, cpus)
    except Exception as exc:  # Ray's wrappers of worker errors: one line, no traceback
        raise unwrap(exc) from None
    finally:
        if started:
            ray.shutdown()


def _execute(ray: Any, job: Job, todo: list[ShardTask], summary: Summary,
             progress: ProgressCallback | None, gpus: float, workers: int,
             cpus: float) -> dict:
    from ray.data import ActorPoolStrategy, DataContext

    task_cpus = 1.0 if cpus >= 2 else cpus / 2
    probe = ray.remote(_probe).options(num_cpus=task_cpus, max_retries=1)
    made = ray.get(probe.remote(job.spec.name, job.weights, job.preprocessing))
    device = job.device if job.device not in (None, "", "auto") else (
        "cuda" if gpus else "cpu")
    cfg = {"model": job.spec.name, "mode": job.preprocessing, "batch_size": job.batch_size,
           "processor": made["processor"], "weights": job.weights, "device": device,
           "precision": job.precision, "thumbnails": job.thumbnails,
           "sources": [_source_ref(s) for s in job.sources]}
    embedder = type("Embedder", (Embedder,), {"cfg": cfg})
    ctx = DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start, ctx.enable_auto_log_stats)
    ctx.enable_progress_bars = ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(logging.CRITICAL)  # errors come back as one line (unwrap)
    try:
        items = [{"index": i, "task": tuple(t)} for i, t in enumerate(todo)]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.flat_map(_decode, fn_kwargs={"cfg": cfg}, num_cpus=task_cpus,
                         memory=_decode_memory(job))
        fit = int(ray.available_resources().get("GPU", 0) // gpus) if gpus else int(cpus) - 1
        pool = ActorPoolStrategy(min_size=1, max_size=workers,
                                 initial_size=max(1, min(workers, fit)))
        ds = ds.map(embedder, compute=pool,
                    num_cpus=task_cpus if not gpus else 1.0, num_gpus=gpus or None)
        ds = ds.map(_pack, num_cpus=task_cpus)
        _collect(ds, job, todo, summary, progress, made)
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved[:2]
        ctx.enable_auto_log_stats = saved[2]
        data_log.setLevel(level)
    made["device"] = made.get("device") or device
    made.pop("processor", None)
    return made


def _decode_memory(job: Job) -> int:
    """Working set of a decode task, declared to Ray so it does not overcommit a node: a
    decoded sample, and a group's raw and preprocessed fragments (at most batch_size + one
    sample's fragments), with room for copies. (Being declared, it also keeps Ray Data from
    fusing the decode into the model actors.)"""
    from mtquery.generate.fragment import fragment_grid
    from mtquery.generate.sample import CORE_PX_10M

    spec = job.spec
    per_frag = len(spec.bands) * spec.fragment_size ** 2 * 4
    n = job.batch_size + len(fragment_grid(CORE_PX_10M, spec.fragment_size))
    return int(3 * n * per_frag + 2 * len(spec.bands) * CORE_PX_10M ** 2 * 4)


def _collect(ds: Any, job: Job, todo: list[ShardTask], summary: Summary,
             progress: ProgressCallback | None, made: dict) -> None:
    """Gather each shard's groups as they come, write a shard when all are in."""
    groups: dict[int, dict[int, dict]] = {}
    last: dict[int, int] = {}
    for row in ds.iter_rows():
        i, g = int(row["shard"]), int(row["group"])
        if g in groups.setdefault(i, {}):
            continue  # a retried task's copy
        sha = row["sha256"] or None
        if sha != made["weights_sha256"]:
            raise DataError(f"a Ray worker loaded other weights (sha256 {sha}) than "
                            f"{made['weights']} ({made['weights_sha256']}); give every node "
                            "the same weights (weights=PATH on a shared path)",
                            argument="weights")
        made["device"] = row["device"]
        p = pickle.loads(row["payload"])
        groups[i][g] = p
        summary.timings.add(p["timings"])
        if row["last"]:
            last[i] = g
        if p["samples"] or p["failed"]:
            emit(progress, TASK, p["samples"] + len(p["failed"]), unit="samples",
                 fragments=p["fragments"])
        if i in last and len(groups[i]) == last[i] + 1:
            done = [groups[i][k] for k in range(last[i] + 1)]
            task = todo[i]
            t0 = time.perf_counter()
            st = write_shard(job.out, task, [x for d in done for x in d["parts"]],
                             [f for d in done for f in d["failed"]],
                             job.sources[task.input].path, job.spec.dim, job.block())
            summary.timings.write += time.perf_counter() - t0
            summary.account(st, resumed=False)
            groups[i] = {k: {} for k in groups[i]}  # keep the keys: later copies are skipped
