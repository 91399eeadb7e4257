"""A study on a TLS cluster: the trial channel is mutual TLS with the cluster's certificates."""

from __future__ import annotations

import asyncio

import optuna
import pytest
from distributed import Client, LocalCluster, Security

from daskopt.engine.config import EngineConfig
from daskopt.engine.loop import Engine
from tests import trial_objectives as objectives
from tests.conftest import states


@pytest.fixture(scope="module")
def tls_client(tls_files):
    files = {"tls_ca_file": tls_files["ca"], "tls_client_cert": tls_files["cert"], "tls_client_key": tls_files["key"]}
    security = Security(
        **files,
        tls_scheduler_cert=tls_files["cert"],
        tls_scheduler_key=tls_files["key"],
        tls_worker_cert=tls_files["cert"],
        tls_worker_key=tls_files["key"],
        require_encryption=True,
    )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, protocol="tls", security=security, dashboard_address=":0"
        ) as cluster,
        Client(cluster, security=security) as client,
    ):
        yield client


def test_study_on_a_tls_cluster_uses_a_tls_channel(tls_client):
    assert tls_client.scheduler.address.startswith("tls://")
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=5.0))  # step 0 reports >= 10
    engine = Engine(
        study, objectives.quadratic, tls_client, EngineConfig(n_concurrent=2, n_trials=10, show_progress=False)
    )
    asyncio.run(engine.run())
    assert engine.channel_address.startswith("tls://")
    assert states(study) == {"PRUNED": 10}  # every report and prune decision crossed the TLS channel


def test_relay_on_a_tls_cluster_runs_on_dask_comms(tls_client):
    """The relay cannot take a TLS socket from its comm, so it stays on Dask's (TLS) comms end to end."""
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=5.0))
    config = EngineConfig(n_concurrent=2, n_trials=10, show_progress=False, channel="relay")
    engine = Engine(study, objectives.quadratic, tls_client, config)
    asyncio.run(engine.run())
    assert engine.channel_address is None
    assert engine.relay_transport == "comm"
    assert states(study) == {"PRUNED": 10}
