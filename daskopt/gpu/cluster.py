"""``[cluster] kind = "local-cuda"``: worker processes pinned to this machine's GPUs.

Three layouts, all advertising integer ``GPU_SLOT`` units (docs/gpu.md has the reasoning and numbers):

- ``trials_per_gpu = 1``: ``dask_cuda.LocalCUDACluster``, one single-thread worker per GPU, ``GPU_SLOT=1``.
- ``trials_per_gpu = k > 1``, ``packing = "processes"`` (the default): ``k`` single-thread worker processes
  per GPU, each pinned to it through ``CUDA_VISIBLE_DEVICES`` and offering ``GPU_SLOT=1``
  (:class:`PinnedGPUCluster`). Each trial then has a process, a CUDA context and a memory cap of its own.
- ``trials_per_gpu = k > 1``, ``packing = "threads"``: ``LocalCUDACluster`` with ``k`` threads per worker
  and ``GPU_SLOT=k``: one CUDA context per GPU shared by its ``k`` trials.
- ``gpus_per_trial = g > 1``: one worker that sees all the GPUs, offers ``GPU_SLOT = <GPUs>`` and has
  ``<GPUs> // g`` threads; each trial takes ``g`` of its GPUs (:mod:`daskopt.gpu.trial`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from distributed import LocalCluster
from distributed.worker_memory import parse_memory_limit

from daskopt.errors import ClusterError, SpecError
from daskopt.gpu.trial import GPU_RESOURCE

_logger = logging.getLogger(__name__)


def rotated(devices: Sequence[str], first: int) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a worker pinned to ``devices[first]`` (listed first, as dask-cuda does)."""
    order = list(devices[first:]) + list(devices[:first])
    return ",".join(order)


class PinnedGPUCluster(LocalCluster):
    """A ``LocalCluster`` of ``per_gpu`` single-thread worker processes per GPU, each offering ``GPU_SLOT=1``.

    Worker ``gpu<d>-<j>`` sees ``CUDA_VISIBLE_DEVICES`` starting with device ``d``, so ``cuda:0`` is its GPU.
    Needs no GPU library itself: on a machine without GPUs the variable is just set (tests use that).
    """

    def __init__(self, devices: Sequence[str], per_gpu: int, *, env: Mapping[str, str] | None = None, **kwargs: Any):
        if not devices or per_gpu < 1:
            raise ValueError(f"need at least one device and per_gpu >= 1, got {list(devices)} and {per_gpu}")
        self._pins = [(f"gpu{d}-{j}", rotated(devices, i)) for i, d in enumerate(devices) for j in range(per_gpu)]
        self._env = dict(env or {})
        self._affinity = _affinity_plugins(devices)
        kwargs.setdefault("memory_limit", parse_memory_limit("auto", 1, len(self._pins), logger=_logger))
        resources = {**kwargs.pop("resources", {}), GPU_RESOURCE: 1}
        super().__init__(n_workers=0, threads_per_worker=1, processes=True, resources=resources, **kwargs)
        self.scale(len(self._pins))
        if not self.asynchronous:
            self.sync(self._correct_state)

    def new_worker_spec(self) -> dict[str, dict[str, Any]]:
        for name, visible in self._pins:
            if name not in self.worker_spec:
                spec = copy.deepcopy(self.new_spec)
                options = spec["options"]
                options["env"] = {**options.get("env", {}), **self._env, "CUDA_VISIBLE_DEVICES": visible}
                plugin = self._affinity.get(visible.split(",")[0])
                if plugin is not None:
                    options["plugins"] = {*options.get("plugins", ()), plugin}
                return {name: spec}
        raise ValueError(f"cannot scale beyond {len(self._pins)} workers: one per GPU slot")


def _affinity_plugins(devices: Sequence[str]) -> dict[str, Any]:
    """dask-cuda's CPU-affinity plugin per device (workers run on the cores next to their GPU), if available."""
    try:
        from dask_cuda.plugins import CPUAffinity
        from dask_cuda.utils import get_cpu_affinity, nvml_device_index

        cores = {d: get_cpu_affinity(nvml_device_index(0, rotated(devices, i))) for i, d in enumerate(devices)}
        return {d: CPUAffinity(c) for d, c in cores.items()}
    except Exception:  # no dask-cuda or no NVML: the workers keep the default affinity
        return {}


def multi_gpu_cluster(devices: Sequence[str], gpus_per_trial: int, **kwargs: Any) -> LocalCluster:
    """One worker that sees ``devices``, offers ``GPU_SLOT = len(devices)`` and runs ``len // g`` trials."""
    if gpus_per_trial > len(devices):
        raise ClusterError(
            f"gpus_per_trial = {gpus_per_trial} but this machine has {len(devices)} GPU(s) ({','.join(devices)}); "
            "lower gpus_per_trial or use a cluster of bigger nodes"
        )
    env = {**kwargs.pop("env", {}), "CUDA_VISIBLE_DEVICES": ",".join(devices)}
    resources = {**kwargs.pop("resources", {}), GPU_RESOURCE: len(devices)}
    threads = len(devices) // gpus_per_trial
    return LocalCluster(n_workers=1, threads_per_worker=threads, processes=True, resources=resources, env=env, **kwargs)


def local_devices(limit: int | None = None) -> list[str]:
    """This machine's GPUs as ``CUDA_VISIBLE_DEVICES`` entries (that variable if set, else NVML's count)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = [part.strip() for part in listed.split(",") if part.strip()]
    else:
        devices = [str(i) for i in range(_gpu_count())]
    if not devices:
        raise ClusterError("found no GPU on this machine (CUDA_VISIBLE_DEVICES, NVML, torch); local-cuda needs one")
    return devices[:limit] if limit else devices


def _gpu_count() -> int:
    """GPUs on this machine: NVML through dask-cuda or nvidia-ml-py, else torch; 0 when none can tell."""
    try:
        from dask_cuda.utils import get_n_gpus

        return int(get_n_gpus())
    except ImportError:
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no nvidia-ml-py, or no driver
        pass
    try:
        import torch

        return int(torch.cuda.device_count())
    except ImportError:
        return 0


@contextlib.contextmanager
def local_cuda_cluster(spec: Any, security: Any = None) -> Iterator[Any]:
    """Start the ``local-cuda`` layout the ``[cluster]`` spec asks for (the ``cuda`` extra is required)."""
    try:
        import dask_cuda
    except ImportError:
        raise SpecError(
            "kind = 'local-cuda' needs the dask_cuda package; install it with: pip install 'daskopt[cuda]'",
            key="cluster.kind",
        ) from None
    per_gpu, gpus = spec.trials_per_gpu, spec.gpus_per_trial
    common: dict[str, Any] = {"dashboard_address": ":0"}
    if security is not None:
        common["security"] = security
    if gpus > 1:
        cluster = multi_gpu_cluster(local_devices(spec.n_workers), gpus, **common)
    elif per_gpu > 1 and (spec.packing or "processes") == "processes":
        cluster = PinnedGPUCluster(local_devices(spec.n_workers), per_gpu, **common)
    else:
        options: dict[str, Any] = {"threads_per_worker": per_gpu, "resources": {GPU_RESOURCE: per_gpu}}
        if spec.n_workers:
            options["n_workers"] = spec.n_workers
        cluster = dask_cuda.LocalCUDACluster(**common, **options)
    with cluster:
        yield cluster
