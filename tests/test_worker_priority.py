"""Worker processes below the driver (``daskopt.worker_priority``), on real ``LocalCluster``s: every thread
of a worker, tasks started later, workers that join later, and the clusters daskopt starts itself."""

from __future__ import annotations

import logging
import os
import threading
import types
from collections.abc import Iterator

import optuna
import pytest
from distributed import Client, LocalCluster

import daskopt
from daskopt.cluster import open_client, worker_nice
from daskopt.spec.cluster import ClusterSection
from daskopt.worker_priority import check_nice, lower_this_process, lower_worker_priority
from tests import trial_objectives as objectives

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="per-thread nice values are Linux's")


def _thread_nices() -> list[int]:
    """On a worker: the nice value of each of its process's threads."""
    nices = []
    for tid in os.listdir("/proc/self/task"):
        try:
            nices.append(os.getpriority(os.PRIO_PROCESS, int(tid)))
        except ProcessLookupError:
            continue
    return nices


def _task_nice(_: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as local:
        yield local


def _driver_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_every_worker_thread_and_later_task_and_worker_run_below_the_driver(cluster: LocalCluster) -> None:
    driver = _driver_nice()
    with Client(cluster) as client:
        lower_worker_priority(client, 0)  # 0: left as it was
        assert all(n == driver for nices in client.run(_thread_nices).values() for n in nices)

        lower_worker_priority(client, 7)
        assert all(n == 7 for nices in client.run(_thread_nices).values() for n in nices)
        assert set(client.gather(client.map(_task_nice, range(8), pure=False))) == {7}
        assert _driver_nice() == driver

        # never the other way: a lower request changes nothing, a higher one lowers further
        assert set(client.run(lower_this_process, 5).values()) == {0}
        assert all(n == 7 for nices in client.run(_thread_nices).values() for n in nices)

        cluster.scale(2)  # a worker that joins later gets the plugin too
        client.wait_for_workers(2, timeout=60)
        per_worker = client.run(_thread_nices)
        assert len(per_worker) == 2
        assert all(n == 7 for nices in per_worker.values() for n in nices)


@pytest.mark.parametrize("bad", [-1, 20, 1.5, True, "10", None])
def test_bad_nice_values_are_refused_in_one_line(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^nice: got .*; expected a whole number from 0 \(unchanged\) to 19$"):
        check_nice(bad)


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [("local", None, 19), ("local-cuda", None, 19), ("address", None, 0), ("slurm", None, 0), ("address", 3, 3)],
)
def test_clusters_daskopt_starts_on_this_machine_default_to_nice_19(
    kind: str, given: int | None, expected: int
) -> None:
    assert worker_nice(types.SimpleNamespace(worker_nice=given), kind) == expected


def test_the_clusters_daskopt_starts_run_their_trials_below_the_driver() -> None:
    study = optuna.create_study()
    daskopt.optimize(study, objectives.records_its_nice, n_trials=2, show_progress_bar=False)  # a private cluster
    assert [t.value for t in study.trials] == [19.0, 19.0]

    with open_client(ClusterSection(kind="local", n_workers=1, worker_nice=4)) as client:  # a study file's
        assert all(n == 4 for nices in client.run(_thread_nices).values() for n in nices)
