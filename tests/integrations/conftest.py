"""CPU stand-ins for GPU clusters: the same worker layouts ``local-cuda`` starts, with no GPU behind them.

``CUDA_VISIBLE_DEVICES`` and ``GPU_SLOT`` are only an environment variable and a Dask resource, so placement
can be checked on any machine; what a real GPU adds (memory caps, ``cuda:N``) is in ``tests/gpu``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster

from daskopt.gpu.cluster import PinnedGPUCluster, multi_gpu_cluster

QUIET = {"dashboard_address": ":0", "silence_logs": 40}


@pytest.fixture(scope="module")
def pinned_client() -> Iterator[Client]:
    """``trials_per_gpu = 2``, processes: 2 one-thread worker processes pinned to each of GPUs 0 and 1."""
    with PinnedGPUCluster(["0", "1"], 2, **QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(4, timeout=60)
        yield client


@pytest.fixture(scope="module")
def threads_client() -> Iterator[Client]:
    """``trials_per_gpu = 2``, threads: one worker process on GPU 3 with 2 threads and ``GPU_SLOT = 2``."""
    env = {"CUDA_VISIBLE_DEVICES": "3"}
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, resources={"GPU_SLOT": 2}, env=env, **QUIET) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(1, timeout=60)
        yield client


@pytest.fixture(scope="module")
def multi_client() -> Iterator[Client]:
    """``gpus_per_trial = 2`` on a 4-GPU node: one worker that owns GPUs 0-3, 2 trials at a time."""
    with multi_gpu_cluster(["0", "1", "2", "3"], 2, **QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=60)
        yield client
