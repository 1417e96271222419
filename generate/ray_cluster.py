"""Reaching Ray for the generator's Ray engine: the options (:class:`RayOptions`), joining a
cluster or starting a local Ray (:func:`connect`), Ray Client (``ray://``, through which Ray
Data does not run: the whole call goes to the head node, :func:`run_through_client`), and
worker errors back as the library's one-line errors (:func:`unwrap`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtquery.errors import DataError, MTQueryError, UsageError
from mtquery.progress import ProgressCallback

if TYPE_CHECKING:
    from mtquery.generate.job import Summary


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` (None: the Ray initialised in this process, else a local
    one), ``workers`` model actors (None: one per GPU, or cluster CPUs - 1), ``gpus_per_worker``
    (None: 1 when the cluster has GPUs, else 0), ``connect_timeout`` seconds."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    connect_timeout: float = 30.0

    @classmethod
    def checked(cls, address: str | None, workers: int | None, gpus_per_worker: float | None,
                connect_timeout: float, *, device: str | None = None,
                precision: str = "fp32") -> RayOptions:
        """The options, or a UsageError naming the argument that is wrong."""
        if workers is not None and workers < 1:
            raise UsageError("workers must be >= 1", argument="workers")
        if gpus_per_worker is not None and gpus_per_worker < 0:
            raise UsageError("gpus_per_worker must be >= 0", argument="gpus_per_worker")
        if connect_timeout <= 0:
            raise UsageError("connect_timeout must be > 0", argument="connect_timeout")
        if address is not None and address != "auto":
            _host_port(address)
        if device not in (None, "", "auto", "cpu", "cuda"):
            raise UsageError(f"device {device!r}: with engine='ray' the device is 'cpu' or "
                             "'cuda' (a GPU is given to each actor by Ray)", argument="device")
        if device == "cpu" and gpus_per_worker:
            raise UsageError("device 'cpu' with gpus_per_worker > 0", argument="device")
        if device == "cuda" and gpus_per_worker == 0:
            raise UsageError("device 'cuda' needs gpus_per_worker > 0", argument="device")
        if precision != "fp32" and (gpus_per_worker == 0 or device == "cpu"):
            raise UsageError(f"precision {precision!r} needs GPU workers", argument="precision")
        return cls(address, workers, gpus_per_worker, connect_timeout)

    @property
    def client(self) -> bool:
        """Through Ray Client (``ray://``, given, or in ``$RAY_ADDRESS`` when this process has
        no Ray yet)?"""
        address = self.address
        if address is None:
            ray = sys.modules.get("ray")
            if ray is None or not ray.is_initialized():
                address = os.environ.get("RAY_ADDRESS")
        return (address or "").startswith("ray://")


def _host_port(address: str) -> tuple[str, int]:
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"address {address!r}: expected 'auto', 'ray://HOST:PORT' or "
                         "'HOST:PORT'", argument="address")
    return host, int(port)


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError("engine='ray' needs Ray: pip install 'mtquery[cluster]'",
                         argument="engine") from None
    return ray


def connect(ray: Any, opts: RayOptions) -> bool:
    """Join the cluster of ``opts.address`` (True: this call initialised Ray, so the caller
    shuts it down), reuse the Ray of this process, or start a local one."""
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR,
             "log_to_driver": False}
    if opts.address is None and ray.is_initialized():
        return False
    address = opts.address or os.environ.get("RAY_ADDRESS") or None  # as ray.init does
    if address is None:
        ray.init(**quiet)
        return True
    opts = RayOptions(address, opts.workers, opts.gpus_per_worker, opts.connect_timeout)
    if ray.is_initialized():
        raise UsageError("Ray is already initialised in this process; leave address unset "
                         "to use it", argument="address")
    if opts.address != "auto":
        import socket

        host, port = _host_port(opts.address)
        try:
            socket.create_connection((host, port), timeout=opts.connect_timeout).close()
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or exc)
            raise DataError(f"cannot reach the Ray cluster at {opts.address}: {reason}",
                            argument="address") from None
    try:
        ray.init(address=opts.address, **{k: v for k, v in quiet.items()
                                          if k != "include_dashboard"})
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(f"cannot connect to the Ray cluster at {opts.address}: "
                        f"{type(exc).__name__}: {first}", argument="address") from None
    return True


def run_through_client(run: Callable[..., Summary], kwargs: dict,
                       progress: ProgressCallback | None, opts: RayOptions) -> Summary:
    """``ray://``: Ray Data does not run through Ray Client (ray-project/ray#42739), so the
    whole :func:`~mtquery.generate.pipeline.generate` call runs as one task on the head node
    (inputs and output are paths there), its progress events relayed to ``progress``."""
    ray = import_ray()
    address = opts.address or os.environ["RAY_ADDRESS"]
    connect(ray, RayOptions(address, connect_timeout=opts.connect_timeout))
    try:
        from ray.util.queue import Queue

        queue = Queue(actor_options={"num_cpus": 0})
        head = {"node:__internal_head__": 0.001}
        ref = ray.remote(_remote_generate).options(num_cpus=0, resources=head,
                                                   max_retries=0).remote(run, kwargs, queue)
        while not ray.wait([ref], timeout=0.5)[0]:
            _relay(queue, progress)
        summary = ray.get(ref)
        _relay(queue, progress)
        summary.engine["address"] = address
        return summary
    except Exception as exc:
        raise unwrap(exc) from None
    finally:
        ray.shutdown()


def _remote_generate(run: Callable[..., Summary], kwargs: dict, queue: Any) -> Summary:
    return run(**kwargs, engine="ray", progress=queue.put)


def _relay(queue: Any, progress: ProgressCallback | None) -> None:
    n = queue.qsize()
    for event in queue.get_nowait_batch(n) if n else []:
        if progress is not None:
            progress(event)


def unwrap(exc: BaseException) -> MTQueryError:
    """The MTQueryError behind a Ray error (task or actor, whose ``cause`` is the worker's
    exception) as a clean one-line copy, else a one-line DataError."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, MTQueryError) and not isinstance(cause, BaseException):
            return type(e)((str(e).strip().splitlines() or [""])[0], argument=e.argument)
        todo += [cause, e.__cause__, e.__context__]
    first = (str(exc).strip().splitlines() or [""])[0]
    return DataError(f"the Ray engine failed ({type(exc).__name__}: {first[:300]}); finished "
                     "shards are kept: rerun the same command to resume")
