"""Real GPUs: local-cuda layouts, packing, memory caps and device placement seen from inside trials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import optuna
import pytest
from distributed import Client

import daskopt
from daskopt.cluster import open_client
from daskopt.engine.slots import cluster_slots
from daskopt.spec.cluster import ClusterSection
from tests.conftest import states
from tests.gpu import needs_cuda, needs_dask_cuda
from tests.gpu import objectives as gpu_objectives
from tests.integrations import objectives

pytestmark = [*needs_cuda, needs_dask_cuda]


@contextmanager
def local_cuda(**keys: object) -> Iterator[Client]:
    with open_client(ClusterSection.model_validate({"kind": "local-cuda", **keys})) as client:
        yield client


def n_gpus() -> int:
    import torch

    return int(torch.cuda.device_count())


def test_one_dask_cuda_worker_per_gpu_and_each_trial_on_its_workers_gpu():
    with local_cuda() as client:
        assert len(client.nthreads()) == n_gpus()
        assert cluster_slots(client, resources={"GPU_SLOT": 1}) == n_gpus()
        study = optuna.create_study()
        daskopt.optimize(
            study, gpu_objectives.cuda_probe, n_trials=2 * n_gpus(), client=client, resources={"gpus_per_trial": 1}
        )
    assert states(study) == {"COMPLETE": 2 * n_gpus()}
    for t in study.trials:
        assert t.user_attrs["device"] == "cuda:0" and t.user_attrs["current_device"] == 0
    by_worker_gpu = {t.user_attrs["visible"].split(",")[0] for t in study.trials}
    assert len({t.user_attrs["uuid"] for t in study.trials}) == len(by_worker_gpu)  # one physical GPU per worker


@pytest.mark.parametrize("packing", ["processes", "threads"])
def test_k_trials_share_each_gpu_at_once(packing):
    with local_cuda(n_workers=1, trials_per_gpu=2, packing=packing) as client:
        assert cluster_slots(client, resources={"GPU_SLOT": 1}) == 2
        study = optuna.create_study()
        daskopt.optimize(study, gpu_objectives.cuda_probe, n_trials=6, client=client, resources={"gpus_per_trial": 1})
    assert states(study) == {"COMPLETE": 6}
    assert len({t.user_attrs["uuid"] for t in study.trials}) == 1
    assert objectives.most_at_once(study.trials) == 2
    pids = {t.user_attrs["pid"] for t in study.trials}
    assert len(pids) == (2 if packing == "processes" else 1)


@pytest.mark.parametrize("packing", ["processes", "threads"])
def test_gpu_memory_fraction_caps_each_trial(packing):
    with local_cuda(n_workers=1, trials_per_gpu=2, packing=packing) as client:
        study = optuna.create_study()
        daskopt.optimize(
            study,
            gpu_objectives.memory_cap_probe,
            n_trials=2,
            client=client,
            resources={"gpus_per_trial": 1, "gpu_memory_fraction": 0.2},
        )
    assert states(study) == {"COMPLETE": 2}
    for t in study.trials:
        assert t.user_attrs["big_refused"], "60% of the GPU was allowed under a 20% share"
        assert t.user_attrs["process_fraction"] == pytest.approx(0.2 if packing == "processes" else 0.4)


def test_a_two_gpu_trial_runs_nccl_ranks_on_its_two_gpus():
    if n_gpus() < 2:
        pytest.skip("needs 2 GPUs")
    with local_cuda(gpus_per_trial=2) as client:
        study = optuna.create_study(direction="maximize")
        daskopt.optimize(
            study, objectives.distributed_objective, n_trials=2, client=client, resources={"gpus_per_trial": 2}
        )
    assert states(study) == {"COMPLETE": 2}
    for t in study.trials:
        assert t.value == pytest.approx(3 * t.params["scale"])  # rank 0's all_reduce over both GPUs
        assert len(t.user_attrs["devices"]) == 2
