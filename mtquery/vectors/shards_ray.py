"""Per-file shards built on a Ray cluster (``mtquery index build --per-file --engine ray``):
one Ray task per file runs the same :func:`mtquery.vectors.build.build_index` as the local
engine, into the same ``<file>.mtindex`` beside the file, so the shards (and the answers of
``knn`` over them, which stays local: threads across shards) are the local engine's. Reaching
the cluster and its errors go through :mod:`mtquery.generate.ray_cluster`, as generation's
Ray engine does. The files must be at the same paths on every node (a shared filesystem)."""

from __future__ import annotations

from mtquery.progress import ProgressCallback, emit

#: CPUs a shard's task asks Ray for (the build's threads inside it)
TASK_CPUS = 1


def _build_one(path: str, params: dict) -> str:
    from mtquery.vectors.build import BuildParams, build_index
    from mtquery.vectors.shards import shard_path

    return str(build_index(path, shard_path(path), BuildParams(**params)))


def build_on_ray(files: list[str], params: dict, address: str | None,
                 progress: ProgressCallback | None = None) -> None:
    """Build the shards of ``files`` as Ray tasks; a failed task is one line (the finished
    shards stay: the rerun keeps them)."""
    from mtquery.generate.ray_cluster import RayOptions, connect, import_ray, unwrap

    opts = RayOptions.checked(address, None, None, 30.0)
    ray = import_ray()
    started = connect(ray, opts)
    try:
        task = ray.remote(num_cpus=TASK_CPUS, max_retries=2)(_build_one)
        pending = [task.remote(f, dict(params)) for f in files]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                path = ray.get(ref)
                emit(progress, "index shards on Ray", 1, total=len(files), unit="shards")
                emit(progress, "index", message=f"{path}: built on Ray")
    except Exception as exc:
        raise unwrap(exc) from None
    finally:
        if started:
            ray.shutdown()
