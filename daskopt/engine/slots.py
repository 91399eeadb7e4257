"""How many trials the cluster can run at once, and checks that requested resources exist."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client

from daskopt.errors import ClusterError
from daskopt.gpu.trial import GPU_RESOURCE

if TYPE_CHECKING:
    from daskopt.settings import Elastic, Resources

logger = logging.getLogger("daskopt")


def cluster_slots(client: Client, wait_s: float = 60.0, resources: dict[str, float] | None = None) -> int:
    """Total worker threads, or with ``resources`` the trials the workers' advertised resources allow at once
    (per worker: its threads, at most ``floor(offered / requested)`` per resource). Waits up to ``wait_s``
    for a first worker of a cluster still starting."""
    nthreads = client.nthreads()
    if not nthreads:
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except TimeoutError:
            raise ClusterError(
                f"no Dask worker joined the scheduler at {client.scheduler.address} within {wait_s:.0f}s; "
                "start workers (`dask worker ADDRESS`) or pass n_concurrent explicitly"
            ) from None
        nthreads = client.nthreads()
    if resources:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        return max(1, sum(_resource_slots(worker, resources) for worker in workers))
    return max(1, sum(nthreads.values()))


def _resource_slots(worker: dict[str, Any], resources: dict[str, float]) -> int:
    offered = worker.get("resources", {})
    fits = [int(offered.get(name, 0) // amount) for name, amount in resources.items() if amount > 0]
    return min([int(worker.get("nthreads", 1)), *fits])


def check_resources(client: Client, resources: dict[str, float] | None) -> None:
    """Refuse resource requests no worker can satisfy: Dask would leave such tasks pending silently."""
    if not resources:
        return
    info = client.scheduler_info().get("workers", {})
    if not info:
        return  # an adaptive cluster with no worker yet: nothing to check against
    for name, amount in resources.items():
        offered = [w.get("resources", {}).get(name, 0) for w in info.values()]
        if not any(have >= amount for have in offered):
            best = max(offered, default=0)
            raise ClusterError(
                f"trials request resource {name}={amount}, but no worker offers that much (largest: {best}); "
                f"start workers with `--resources {name}=...` or lower the request"
            )


BUSY_WORKER_TRIALS = 64  # trials at once on one worker process from which Dask's profiler is worth a word


def unprofiled_worker_config() -> dict[str, Any]:
    """Dask's configuration with the worker profiler off, for the ``LocalCluster`` workers daskopt starts
    itself (``optimize`` without a client, study files with ``kind = "local"``), passed as the nannies'
    ``config`` so that workers started later get it too.

    Why: on Python 3.11 the profiler's walk over the other threads' stacks (``frame.f_back``) can read a
    frame that its thread has already left. Mostly it reads a stray object and logs an ``AttributeError``;
    sometimes the worker process dies in ``PyFrame_GetBack`` (a segmentation fault, in the kernel's log),
    and every trial it ran is lost with it: 232 and 442 trials in two runs of benchmarks/concurrency.py
    (1,000 and 2,000 at once, workers of 250 and 500 threads), each traced to a worker's crash. It is also
    the workers' largest cost at that scale (see :func:`warn_profiled_busy_workers`). A cluster of the
    user's own keeps its configuration; the warning below says what to set."""
    return dict(dask.config.merge(dask.config.config, {"distributed": {"worker": {"profile": {"enabled": False}}}}))


def warn_profiled_busy_workers(client: Client, n_concurrent: int) -> None:
    """One line when a worker process may run ``BUSY_WORKER_TRIALS`` or more trials at once with Dask's
    worker profiler on. Every 10 ms it walks the stack of each thread running a task, twice: with 500
    trials on a worker process it held half of that process's GIL (benchmarks/concurrency.py, 2,000 at
    once: 2.0x raw Dask's time with it, 1.7x without). daskopt leaves the cluster's configuration alone."""
    nthreads = client.nthreads()
    busiest = min(max(nthreads.values(), default=0), n_concurrent)
    if busiest < BUSY_WORKER_TRIALS:
        return
    try:
        profiled = client.run(_profiler_on, on_error="return")
    except Exception:  # a worker left meanwhile: this is advice, not a check
        return
    if any(on is True for on in profiled.values()):
        logger.warning(
            "daskopt: up to %d trials at once on a worker process, with Dask's worker profiler on: it walks "
            "every running trial's stack every 10 ms, which at this scale costs the workers more than the "
            "trials' own messages, and on Python 3.11 can crash a worker (its trials are lost); set "
            "distributed.worker.profile.enabled: false in the workers' Dask config",
            busiest,
        )


def _profiler_on(dask_worker: Any = None) -> bool:
    """On a worker (``client.run``): whether its profiler runs."""
    return dask_worker is not None and "profile" in getattr(dask_worker, "periodic_callbacks", {})


def elastic_slots(client: Client, wait_s: float = 60.0) -> dict[str, int]:
    """The ``GPU_SLOT`` units each worker offers for elastic trials, by worker address (a trial's replicas
    may span workers). Waits up to ``wait_s`` for a first worker."""
    if not client.nthreads():
        cluster_slots(client, wait_s)  # waits, or says there is no worker
    workers = client.scheduler_info(n_workers=-1)["workers"]
    offered = {address: int(info.get("resources", {}).get(GPU_RESOURCE, 0)) for address, info in workers.items()}
    if not any(offered.values()):
        raise ClusterError(
            f"elastic trials take {GPU_RESOURCE} units as replicas, but no worker offers any; start workers with "
            f"`--resources {GPU_RESOURCE}=<replicas it can run>` (one per GPU), or use local-cuda"
        )
    return {address: slots for address, slots in offered.items() if slots > 0}


def check_elastic(
    elastic: Elastic, objective: Callable[[Any], Any], resources: Resources, scheduler: Any, checkpoint_dir: Any
) -> Callable[[Any], Any]:
    """Refuse settings elastic trials cannot run with; return the objective, wrapped to take each stretch's
    GPUs (:class:`daskopt.gpu.GpuObjective` reads ``trial.elastic.replicas``)."""
    where = "daskopt.optimize"
    if scheduler is not None:
        raise ValueError(f"{where}: elastic trials and a scheduler cannot be combined yet; pass one of them")
    if resources.gpus_per_trial is not None:
        raise ValueError(
            f"{where}: elastic trials size themselves between min_replicas and max_replicas; drop gpus_per_trial"
        )
    if checkpoint_dir is None:
        raise ValueError(
            f"{where}: elastic trials resize by restarting from a checkpoint: pass "
            "tracking=Tracking(checkpoint_dir=...) (a folder all workers reach)"
        )
    from daskopt.gpu import GpuObjective

    return GpuObjective(objective, gpus_per_trial=elastic.min_replicas, memory_fraction=resources.gpu_memory_fraction)
