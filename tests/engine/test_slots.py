"""Advice on the cluster a call starts on (engine/slots.py), against real in-process workers."""

from __future__ import annotations

import logging

import dask
import pytest
from distributed import Client, LocalCluster

from daskopt.engine.slots import BUSY_WORKER_TRIALS, warn_profiled_busy_workers


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
