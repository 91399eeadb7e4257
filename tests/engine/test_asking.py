"""When trials are asked, and how many run: ``n_concurrent`` is a cap, every asked trial runs, and at one
trial at a time the sampler sees exactly what plain Optuna's sees.

A worker with more threads than ``n_concurrent`` runs more tasks than trials may run; a sampler slow
enough to leave the loop's inline path gets trials asked ahead of free slots. Both are set up here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from distributed import Client, LocalCluster

import daskopt
from tests.conftest import states


@pytest.fixture(scope="module")
def six_threads() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=1, threads_per_worker=6, processes=True, dashboard_address=":0", silence_logs=40) as c,
        Client(c) as client,
    ):
        yield client


class SlowRandomSampler(optuna.samplers.RandomSampler):
    """A random sampler whose every sample takes 3 ms: too slow to run inline, so trials get asked ahead."""

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        time.sleep(0.003)
        return super().sample_independent(study, trial, name, distribution)


def timed_objective(trial: optuna.Trial) -> float:
    trial.set_user_attr("t0", time.time())
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.03)
    trial.set_user_attr("t1", time.time())
    return x


def most_at_once(study: optuna.Study) -> int:
    events = []
    for t in study.trials:
        if "t1" in t.user_attrs:
            events += [(t.user_attrs["t0"], 1), (t.user_attrs["t1"], -1)]
    running = peak = 0
    for _, change in sorted(events):
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("n_concurrent", [1, 2, 4])
def test_n_concurrent_is_never_exceeded(six_threads, n_concurrent):
    study = optuna.create_study(sampler=SlowRandomSampler(seed=0))
    daskopt.optimize(study, timed_objective, n_trials=40, n_concurrent=n_concurrent, client=six_threads)
    assert states(study) == {"COMPLETE": 40}
    assert most_at_once(study) <= n_concurrent


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda: {"callbacks": [optuna.study.MaxTrialsCallback(12)]}, id="MaxTrialsCallback"),
        pytest.param(lambda: {"callbacks": [lambda study, trial: trial.number >= 9 and study.stop()]}, id="stop"),
        pytest.param(lambda: {"timeout": 1.0}, id="timeout"),
    ],
)
def test_a_stopped_study_leaves_no_trial_it_did_not_run(six_threads, stop):
    """Plain Optuna runs every trial it asked and asks none after a stop: no FAIL, no WAITING left."""
    study = optuna.create_study(sampler=SlowRandomSampler(seed=0))
    daskopt.optimize(study, timed_objective, n_concurrent=4, client=six_threads, **stop())
    assert set(states(study)) == {"COMPLETE"}
    assert all("t1" in t.user_attrs for t in study.trials)  # each one ran its objective to the end


def sequential_objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    layers = trial.suggest_int("layers", 1, 4)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    return (x - 1) ** 2 + layers + (0.5 if kind == "a" else 0.0)


@pytest.mark.parametrize("multivariate", [False, True])
def test_one_trial_at_a_time_samples_what_plain_optuna_samples(six_threads, multivariate):
    def sampler() -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=3, n_startup_trials=5, multivariate=multivariate)

    plain = optuna.create_study(sampler=sampler())
    plain.optimize(sequential_objective, n_trials=25)
    ours = optuna.create_study(sampler=sampler())
    daskopt.optimize(ours, sequential_objective, n_trials=25, n_concurrent=1, client=six_threads)
    assert [t.params for t in ours.trials] == [t.params for t in plain.trials]
    assert [t.value for t in ours.trials] == [t.value for t in plain.trials]
