"""Shared fixtures: a real multi-process Dask cluster per test module (never the synchronous scheduler)."""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest
from distributed import Client, LocalCluster

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes with one thread each: the CI machine's two cores."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def states(study: optuna.Study) -> dict[str, int]:
    """Trial counts by state name, e.g. ``{"COMPLETE": 8, "PRUNED": 2}``."""
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
