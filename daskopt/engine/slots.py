"""How many trials the cluster can run at once, and checks that requested resources exist."""

from __future__ import annotations

from typing import Any

from distributed import Client

from daskopt.errors import ClusterError


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
