"""A worker running out of memory: the objective of trial 1 allocates far past the worker's ``memory_limit``.

Dask's nanny watches the worker's RSS and terminates the process above 95% of the limit
(``distributed.worker.memory.terminate``), then starts a new one. The trial must end FAIL with
"trial lost ..." (or be retried with the same parameters), and the study must go on to exact outcomes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import optuna
import pytest
from distributed import Client, LocalCluster

import daskopt
from tests.conftest import states

MEMORY_LIMIT = "300MiB"  # an idle worker with daskopt loaded uses ~70 MiB
CHUNK = 32 * 2**20


@pytest.fixture(scope="module")
def small_client() -> Iterator[Client]:
    """Workers with little memory; their nannies restart them when they exceed it."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=MEMORY_LIMIT,
            dashboard_address=":0",
            silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield client


def hogs_memory_on_trial_1(trial: optuna.Trial) -> float:
    """Trial 1 (first attempt only) touches up to 2 GiB in steps, giving the nanny's monitor time to act."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 1 and "retry_of" not in trial.user_attrs:
        hoard = []
        for _ in range(64):
            hoard.append(b"\x01" * CHUNK)  # written, so resident: RSS grows by CHUNK
            time.sleep(0.05)
        return -1.0  # not reached: the nanny kills the process first
    time.sleep(0.05)
    return x


def _wait_for_two_workers(client: Client) -> set[int]:
    deadline = time.monotonic() + 60
    pids: set[int] = set()
    while time.monotonic() < deadline:
        try:
            pids = {p for p in client.run(os.getpid, on_error="ignore").values() if isinstance(p, int)}
        except Exception:
            pids = set()
        if len(pids) == 2:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"the cluster did not come back to 2 workers: {pids}")


@pytest.mark.parametrize("max_retries", [0, 1], ids=["fail", "retry"])
def test_out_of_memory_worker_loses_its_trial_and_the_study_goes_on(small_client, max_retries):
    pids_before = _wait_for_two_workers(small_client)
    restarts_before = len(small_client.get_events("worker-restart-memory"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    daskopt.optimize(
        study,
        hogs_memory_on_trial_1,
        n_trials=8,
        client=small_client,
        failures={"max_retries": max_retries},
        show_progress_bar=False,
    )
    counts = states(study)
    assert "RUNNING" not in counts and "WAITING" not in counts
    lost = study.trials[1]
    assert lost.state.name == "FAIL"
    assert lost.user_attrs["fail_reason"].startswith("trial lost"), lost.user_attrs["fail_reason"]
    if max_retries:
        assert counts == {"COMPLETE": 8, "FAIL": 1}  # 8 outcomes + the lost attempt
        retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
        assert retry.state.name == "COMPLETE" and retry.params == lost.params
    else:
        assert counts == {"COMPLETE": 7, "FAIL": 1}
    assert all(t.value != -1.0 for t in study.trials if t.state.name == "COMPLETE")
    # it was the nanny's memory monitor that ended the worker, and the nanny replaced it
    assert len(small_client.get_events("worker-restart-memory")) > restarts_before
    assert _wait_for_two_workers(small_client) != pids_before
