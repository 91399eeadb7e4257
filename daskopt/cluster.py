"""Turn a ``[cluster]`` section into a connected Dask ``Client`` (and the cluster it owns, if any).

Kinds: ``local`` (CPU ``LocalCluster`` of worker processes), ``local-cuda`` (``dask_cuda.LocalCUDACluster``,
one worker per GPU; the ``cuda`` extra), ``address`` (a running scheduler), ``slurm``
(``dask_jobqueue.SLURMCluster``; the ``jobqueue`` extra). Optional parts are imported only here, with an
error naming the extra to install.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
from collections.abc import Iterator
from typing import Any

from distributed import Client

from daskopt.engine.slots import unprofiled_worker_config
from daskopt.errors import ClusterError, SpecError, first_line
from daskopt.worker_priority import DEFAULT_WORKER_NICE, lower_worker_priority


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

    # distributed.Security takes str paths (a Path fails inside it with "argument of type 'PosixPath' is
    # not iterable"); the spec resolved them to absolute Paths
    ca, cert = str(settings.ca_file), str(settings.cert_file)
    key = str(settings.key_file) if settings.key_file is not None else None
    return Security(
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
        require_encryption=True,
    )


def _adapt(cluster: Any, spec: Any) -> None:
    adapt = getattr(spec, "adapt", None)
    if adapt:
        cluster.adapt(minimum=adapt.minimum, maximum=adapt.maximum)


def adaptive_slots(spec: Any) -> int | None:
    """Trials in flight for an adaptive cluster: what its largest size runs. ``None`` when not adaptive.

    An adaptive cluster may start with no worker and grows only when tasks are queued, so the slots cannot
    be read off the workers present at the start (that wait would never end).
    """
    adapt = getattr(spec, "adapt", None)
    if not adapt:
        return None
    if spec.kind == "slurm":
        options = spec.slurm or {}
        per_worker = max(1, int(options.get("cores", 1)) // max(1, int(options.get("processes", 1))))
    else:
        per_worker = spec.threads_per_worker
    return max(1, adapt.maximum * per_worker)


@contextlib.contextmanager
def open_client(spec: Any, address_override: str | None = None, elastic: Any = None) -> Iterator[Client]:
    """Connect (or start) the cluster the spec names; everything started here is closed on exit. With
    ``elastic`` (the ``[elastic]`` section) a local cluster is one worker whose ``GPU_SLOT`` units are
    replica slots: the CPUs (or ``n_workers``) on ``local``, every GPU on ``local-cuda``."""
    kind = "address" if address_override else spec.kind
    security = _security(spec)
    if kind == "address":
        address = address_override or spec.address
        wait = spec.connect_timeout
        if address.startswith("tls://") and security is None:  # distributed would raise a bare TypeError
            raise ClusterError(
                f"the Dask scheduler at {address} speaks TLS; add [cluster.security] with ca_file, cert_file "
                "and key_file (the certificates its workers use)"
            )
        try:
            client = Client(address, timeout=wait, security=security)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} within {wait:g}s ({type(exc).__name__}); "
                "check [cluster] address, that the scheduler runs, and the TLS settings"
            ) from None
        except (TypeError, ValueError, RuntimeError) as exc:  # e.g. [cluster.security] with a tcp:// address
            reason = first_line(exc)
            raise ClusterError(
                f"cannot connect to the Dask scheduler at {address}: {type(exc).__name__}: {reason}; "
                "check [cluster] address and [cluster.security]"
            ) from None
        with client:
            yield client
        return
    if elastic is not None and kind in ("local", "local-cuda"):
        started = _elastic_cluster(kind, spec, elastic, security)
    else:
        started = _start_cluster(kind, spec, security)
    with started as cluster, Client(cluster, security=security) as client:
        lower_worker_priority(client, worker_nice(spec, kind))
        yield client


def worker_nice(spec: Any, kind: str) -> int:
    """``[cluster] worker_nice``, or its default: the clusters daskopt starts on this machine run their
    workers below the driver (:mod:`daskopt.worker_priority`); others are left as they are."""
    nice = getattr(spec, "worker_nice", None)
    if nice is not None:
        return int(nice)
    return DEFAULT_WORKER_NICE if kind in ("local", "local-cuda") else 0


@contextlib.contextmanager
def _elastic_cluster(kind: str, spec: Any, elastic: Any, security: Any) -> Iterator[Any]:
    """One worker whose replica slots elastic trials share, with a thread for each trial it may run."""
    from distributed import LocalCluster

    from daskopt.gpu.cluster import local_devices, multi_gpu_cluster

    common: dict[str, Any] = {"dashboard_address": ":0", "silence_logs": logging.CRITICAL}
    if security is not None:
        common["security"] = security
    if kind == "local-cuda":
        cluster = multi_gpu_cluster(local_devices(spec.n_workers), elastic.min_replicas, **common)
    else:
        slots = spec.n_workers or os.cpu_count() or 1
        threads = max(1, slots // elastic.min_replicas)
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=threads,
            processes=True,
            resources={"GPU_SLOT": slots},
            config=unprofiled_worker_config(),
            **common,
        )
    with cluster:
        yield cluster


@contextlib.contextmanager
def _start_cluster(kind: str, spec: Any, security: Any) -> Iterator[Any]:
    if kind == "local":
        from distributed import LocalCluster

        options: dict[str, Any] = {"threads_per_worker": spec.threads_per_worker, "processes": True}
        if spec.n_workers:
            options["n_workers"] = spec.n_workers
        if getattr(spec, "adapt", None):
            options["n_workers"] = spec.adapt.minimum  # adaptive: start small, grow with the queued trials
        # Worker processes write to the user's terminal; below CRITICAL their logs are shutdown noise with
        # tracebacks (objective errors are recorded per trial, nanny events are logged here, one line each).
        options["silence_logs"] = logging.CRITICAL
        options["config"] = unprofiled_worker_config()  # Dask's profiler can crash Python 3.11 workers
        with LocalCluster(dashboard_address=":0", security=security, **options) as cluster:
            _adapt(cluster, spec)
            yield cluster
    elif kind == "local-cuda":  # GPU_SLOT units, processes or threads per GPU: daskopt/gpu/cluster.py
        from daskopt.gpu.cluster import local_cuda_cluster

        with local_cuda_cluster(spec, security) as cluster:
            yield cluster
    elif kind == "slurm":
        jobqueue = _require("dask_jobqueue", "jobqueue", kind)
        options = dict(spec.slurm or {})
        jobs = int(options.pop("jobs", 1))
        if shutil.which("sbatch") is None:
            raise ClusterError(
                "kind = 'slurm' submits workers with sbatch, which is not on this machine's PATH; run daskopt on "
                "a SLURM login node, or start workers yourself and use kind = 'address'"
            )
        try:
            slurm = jobqueue.SLURMCluster(**options)
        except (TypeError, ValueError) as exc:  # a missing or unknown [cluster.slurm] option
            first = first_line(exc, type(exc).__name__)
            raise SpecError(f"{first}; see deploy/slurm/README.md", key="cluster.slurm") from None
        with slurm as cluster:
            if getattr(spec, "adapt", None):
                _adapt(cluster, spec)
            else:
                cluster.scale(jobs=jobs)
            yield cluster
    else:
        raise ClusterError(f"unknown cluster kind {kind!r}; expected local, local-cuda, address or slurm")
