"""Advice on the cluster a call starts on (engine/slots.py), against real in-process workers."""

from __future__ import annotations

import logging

import dask
import optuna
import pytest
from distributed import Client, LocalCluster

import daskopt
from daskopt.cluster import open_client
from daskopt.engine.slots import BUSY_WORKER_TRIALS, _profiler_on, warn_profiled_busy_workers
from daskopt.spec.cluster import ClusterSection
from tests import trial_objectives as objectives


@pytest.mark.parametrize("profiler", [True, False], ids=["profiler-on", "profiler-off"])
def test_a_worker_about_to_run_many_trials_with_dasks_profiler_gets_one_line(profiler, caplog):
    with (
        dask.config.set({"distributed.worker.profile.enabled": profiler}),
        LocalCluster(
            n_workers=1, threads_per_worker=BUSY_WORKER_TRIALS, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
        caplog.at_level(logging.WARNING, logger="daskopt"),
    ):
        warn_profiled_busy_workers(client, BUSY_WORKER_TRIALS - 1)  # fewer at once: nothing to say
        assert not caplog.records
        warn_profiled_busy_workers(client, 1000)
    lines = [r.getMessage() for r in caplog.records]
    if profiler:
        assert len(lines) == 1 and f"up to {BUSY_WORKER_TRIALS} trials at once" in lines[0]
        assert "distributed.worker.profile.enabled: false" in lines[0]
    else:
        assert lines == []


def test_the_local_clusters_daskopt_starts_run_their_workers_without_dasks_profiler():
    """It can crash Python 3.11 workers that run many trials (engine/slots.py); a cluster of one's own keeps it."""
    study = optuna.create_study()
    daskopt.optimize(study, objectives.records_its_profiler, n_trials=2, show_progress_bar=False)  # a private cluster
    assert [t.value for t in study.trials] == [0.0, 0.0]

    with open_client(ClusterSection(kind="local", n_workers=1)) as client:  # a study file's
        assert list(client.run(_profiler_on).values()) == [False]

    with LocalCluster(n_workers=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        assert list(client.run(_profiler_on).values()) == [True]  # Dask's default, left alone
