"""Elastic trials on a real cluster: gloo replicas on CPU workers that offer ``GPU_SLOT`` units.

The trial that resizes ends with the result of an unresized run (tests/elastic/training.py is the same
arithmetic at any world size), stays one Optuna trial with all its reports, and records its stretches.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from distributed import Client, LocalCluster

import daskopt
from daskopt.engine.elastic import REPLICAS
from tests.elastic.training import elastic_objective, failing_rank_objective, reference

pytest.importorskip("torch")

QUIET = {"dashboard_address": ":0", "silence_logs": 40}
SETTINGS = {
    "min_replicas": 1,
    "max_replicas": 2,
    "initial_batch": 16,
    "max_batch": 16,
    "min_interval_s": 0,
    "restart_s": 0,
}


@pytest.fixture(scope="module", params=["one-worker", "two-workers"])
def slot_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    """2 replica slots (and a thread for each trial a worker may run): on one worker, or one on each of two
    workers, where a trial with 2 replicas spans both (daskopt/elastic/parts.py)."""
    workers, slots = (1, 2) if request.param == "one-worker" else (2, 1)
    with (
        LocalCluster(n_workers=workers, threads_per_worker=2, resources={"GPU_SLOT": slots}, **QUIET) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers, timeout=60)
        yield client


def run(client: Client, folder: Path, points: list[dict[str, float]], **settings: object) -> optuna.Study:
    study = optuna.create_study()
    for point in points:
        study.enqueue_trial(point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        daskopt.optimize(
            study,
            elastic_objective,
            n_trials=len(points),
            client=client,
            elastic={**SETTINGS, **settings},
            tracking={"checkpoint_dir": folder},
            show_progress_bar=False,
            catch=(),
        )
    return study


def test_a_trial_grows_then_shrinks_and_ends_where_an_unresized_run_ends(slot_client: Client, tmp_path: Path) -> None:
    long = {"lr": 0.05, "steps": 40, "sleep_s": 0.05}
    short = {"lr": 0.01, "steps": 2, "sleep_s": 0.05}
    study = run(slot_client, tmp_path, [long, short])
    started = slot_client.run_on_scheduler(_started_keys)
    parts = [key for key in started if "-part-" in key]
    spans = len(slot_client.scheduler_info()["workers"]) > 1
    assert bool(parts) == spans, started  # with one slot per worker, 2 replicas ran on both workers
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
    sizes = [replicas for _, replicas in trial.user_attrs[REPLICAS]]
    # alone after the short trial ends it grows (perfect scaling assumed), measures 2 replicas slow, shrinks
    assert sizes[:3] == [1, 2, 1], trial.user_attrs[REPLICAS]
    expected = reference(long["lr"], long["steps"])
    assert trial.value == pytest.approx(expected[-1], rel=1e-9)
    assert sorted(trial.intermediate_values) == list(range(40))  # one trial, every report, across its stretches
    for step, value in trial.intermediate_values.items():
        assert value == pytest.approx(expected[step], rel=1e-9)
    assert len(study.trials) == 2 and study.trials[1].state == optuna.trial.TrialState.COMPLETE


def test_a_rank_that_raises_fails_the_trial_with_its_own_traceback(slot_client: Client, tmp_path: Path) -> None:
    """With one slot per worker the failing rank runs in the part on the other worker: its traceback, not
    its peer's lost connection, is the trial's failure (and a failure, not a lost trial to retry)."""
    study = optuna.create_study()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        daskopt.optimize(
            study,
            failing_rank_objective,
            n_trials=1,
            client=slot_client,
            elastic={**SETTINGS, "min_replicas": 2},
            tracking={"checkpoint_dir": tmp_path},
            failures={"max_retries": 2},
            show_progress_bar=False,
            catch=(RuntimeError,),
        )
    assert [t.state.name for t in study.trials] == ["FAIL"]  # no retry: the objective's own error
    reason = study.trials[0].user_attrs["fail_reason"]
    assert "rank 1 of 2 raised ValueError: rank 1 could not load its shard" in reason, reason


def _started_keys(dask_scheduler: Any) -> list[str]:
    """The tasks of the last study that the scheduler sent to a worker (its recent transitions)."""
    return sorted({str(entry[0]) for entry in dask_scheduler.transition_log if entry[2] == "processing"})


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="daskopt.Elastic: max_replicas must be >= min_replicas"):
        daskopt.Elastic(min_replicas=4, max_replicas=2)
    with pytest.raises(ValueError, match="lr_rule must be one of"):
        daskopt.Elastic(lr_rule="cubic")
    with pytest.raises(TypeError, match="unknown field"):
        daskopt.Elastic.coerce({"min_replica": 1})
