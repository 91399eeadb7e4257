"""Turn a ``[cluster]`` section into a connected Dask ``Client`` (and the cluster it owns, if any).

Kinds: ``local`` (CPU ``LocalCluster`` of worker processes), ``local-cuda`` (``dask_cuda.LocalCUDACluster``,
one worker per GPU; the ``cuda`` extra), ``address`` (a running scheduler), ``slurm``
(``dask_jobqueue.SLURMCluster``; the ``jobqueue`` extra). Optional parts are imported only here, with an
error naming the extra to install.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from distributed import Client

from daskopt.errors import ClusterError, SpecError


def _require(module: str, extra: str, kind: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(
            f"kind = {kind!r} needs the {module} package; install it with: pip install 'daskopt[{extra}]'",
            key="cluster.kind",
        ) from None


def _security(spec: Any) -> Any:
    settings = getattr(spec, "security", None)
    if not settings:
        return None
    from distributed import Security

    return Security(
        tls_ca_file=settings.ca_file,
        tls_client_cert=settings.cert_file,
        tls_client_key=settings.key_file,
        tls_scheduler_cert=settings.cert_file,
        tls_scheduler_key=settings.key_file,
        tls_worker_cert=settings.cert_file,
        tls_worker_key=settings.key_file,
        require_encryption=True,
    )


def _adapt(cluster: Any, spec: Any) -> None:
    adapt = getattr(spec, "adapt", None)
    if adapt:
        cluster.adapt(minimum=adapt.minimum, maximum=adapt.maximum)


@contextlib.contextmanager
def open_client(spec: Any, address_override: str | None = None) -> Iterator[Client]:
    """Connect (or start) the cluster the spec names; everything started here is closed on exit."""
    kind = "address" if address_override else spec.kind
    security = _security(spec)
    if kind == "address":
        address = address_override or spec.address
        wait = spec.connect_timeout
        try:
            client = Client(address, timeout=wait, security=security)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} within {wait:g}s ({type(exc).__name__}); "
                "check [cluster] address, that the scheduler runs, and the TLS settings"
            ) from None
        with client:
            yield client
        return
    with _start_cluster(kind, spec, security) as cluster, Client(cluster, security=security) as client:
        yield client


@contextlib.contextmanager
def _start_cluster(kind: str, spec: Any, security: Any) -> Iterator[Any]:
    if kind == "local":
        from distributed import LocalCluster

        options: dict[str, Any] = {"threads_per_worker": spec.threads_per_worker, "processes": True}
        if spec.n_workers:
            options["n_workers"] = spec.n_workers
        with LocalCluster(dashboard_address=":0", security=security, **options) as cluster:
            _adapt(cluster, spec)
            yield cluster
    elif kind == "local-cuda":
        dask_cuda = _require("dask_cuda", "cuda", kind)
        per_gpu = spec.trials_per_gpu
        options = {"threads_per_worker": per_gpu, "resources": {"GPU_SLOT": per_gpu}}
        if spec.n_workers:
            options["n_workers"] = spec.n_workers
        with dask_cuda.LocalCUDACluster(dashboard_address=":0", **options) as cluster:
            yield cluster
    elif kind == "slurm":
        jobqueue = _require("dask_jobqueue", "jobqueue", kind)
        options = dict(spec.slurm or {})
        jobs = int(options.pop("jobs", 1))
        with jobqueue.SLURMCluster(**options) as cluster:
            if getattr(spec, "adapt", None):
                _adapt(cluster, spec)
            else:
                cluster.scale(jobs=jobs)
            yield cluster
    else:
        raise ClusterError(f"unknown cluster kind {kind!r}; expected local, local-cuda, address or slurm")
