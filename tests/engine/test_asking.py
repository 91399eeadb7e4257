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
from distributed import Client

import daskopt
from tests.conftest import local_client, states


@pytest.fixture(scope="module")
def six_threads() -> Iterator[Client]:
    with local_client(1, 6) as client:
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


class FailsOnTrial2(optuna.samplers.RandomSampler):
    """A sampler with a bug that shows on one trial only."""

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        if trial.number == 2:
            raise KeyError("the sampler broke on trial 2")
        return super().sample_independent(study, trial, name, distribution)


class FailsBeforeEveryTrial(optuna.samplers.RandomSampler):
    def before_trial(self, study: Any, trial: Any) -> None:
        raise KeyError("the sampler broke before the trial")


DECLARED = {"x": optuna.distributions.FloatDistribution(0, 1)}


def suggests_x(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


SPACES = [pytest.param(DECLARED, id="declared"), pytest.param(None, id="define-by-run")]


@pytest.mark.parametrize("space", SPACES)
def test_a_sampler_error_fails_that_trial_as_in_optuna(six_threads, space):
    """In Optuna the sampler's error comes out of the objective's suggest: it fails that trial, and
    ``catch`` (matching the sampler's own exception type) decides the rest. Declared parameters are
    sampled at ask time in the loop, where the error used to stop the study silently and leave the trial
    RUNNING; a define-by-run suggest turned it into a ValueError."""
    plain = optuna.create_study(sampler=FailsOnTrial2(seed=0))
    plain.optimize(suggests_x, n_trials=5, catch=(KeyError,))
    ours = optuna.create_study(sampler=FailsOnTrial2(seed=0))
    daskopt.optimize(
        ours, suggests_x, n_trials=5, n_concurrent=1, client=six_threads, search_space=space, catch=(KeyError,)
    )
    assert [t.state.name for t in ours.trials] == [t.state.name for t in plain.trials]
    assert [t.state.name for t in ours.trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert ours.trials[2].user_attrs["fail_reason"] == "KeyError: 'the sampler broke on trial 2'"
    assert "sample_independent" in ours.trials[2].user_attrs["traceback"]


@pytest.mark.parametrize("space", SPACES)
def test_an_uncaught_sampler_error_stops_the_study_as_in_optuna(six_threads, space):
    plain = optuna.create_study(sampler=FailsOnTrial2(seed=0))
    with pytest.raises(KeyError, match="the sampler broke on trial 2"):
        plain.optimize(suggests_x, n_trials=5, catch=(ValueError,))
    ours = optuna.create_study(sampler=FailsOnTrial2(seed=0))
    with pytest.raises(daskopt.ObjectiveError, match="^trial 2 raised KeyError: 'the sampler broke on trial 2'$"):
        daskopt.optimize(
            ours, suggests_x, n_trials=5, n_concurrent=1, client=six_threads, search_space=space, catch=(ValueError,)
        )
    assert (
        [t.state.name for t in ours.trials] == [t.state.name for t in plain.trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    )


def test_a_sampler_error_before_any_trial_is_raised_from_optimize_as_in_optuna(six_threads):
    """``study.ask`` itself raised: no trial to fail, and ``catch`` does not apply (Optuna asks outside it)."""
    plain = optuna.create_study(sampler=FailsBeforeEveryTrial())
    with pytest.raises(KeyError, match="the sampler broke before the trial"):
        plain.optimize(suggests_x, n_trials=3, catch=(Exception,))
    ours = optuna.create_study(sampler=FailsBeforeEveryTrial())
    with pytest.raises(KeyError, match="the sampler broke before the trial"):
        daskopt.optimize(ours, suggests_x, n_trials=3, n_concurrent=1, client=six_threads)
    assert len(ours.trials) == len(plain.trials) == 1
    assert plain.trials[0].state.name == "RUNNING"  # Optuna leaves the trial ask had created
    assert ours.trials[0].state.name == "FAIL"  # daskopt leaves nothing RUNNING
    assert ours.trials[0].user_attrs["fail_reason"] == "KeyError: 'the sampler broke before the trial'"
