"""Failure outcomes: objective errors, bad return values, study timeout, trial timeout."""

from __future__ import annotations

import math

import optuna
import pytest

import daskopt
from tests import trial_objectives as objectives
from tests.conftest import states


def test_objective_exception_fails_the_trial_and_the_study_goes_on(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.raises_on_odd, n_trials=10, client=client)
    assert states(study) == {"COMPLETE": 5, "FAIL": 5}
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all(t.user_attrs["fail_reason"] == f"ValueError: odd trial {t.number}" for t in failed)
    assert all("raises_on_odd" in t.user_attrs["traceback"] for t in failed)


def test_uncaught_exception_stops_the_study_and_raises(client):
    study = optuna.create_study()
    with pytest.raises(daskopt.ObjectiveError, match="ValueError: odd trial"):
        daskopt.optimize(study, objectives.raises_on_odd, n_trials=30, client=client, catch=())
    assert states(study).get("RUNNING", 0) == 0
    assert len(study.trials) < 30


def test_catch_matches_by_exception_type(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.raises_on_odd, n_trials=6, client=client, catch=(ValueError,))
    assert states(study) == {"COMPLETE": 3, "FAIL": 3}
    with pytest.raises(daskopt.ObjectiveError):
        daskopt.optimize(optuna.create_study(), objectives.raises_on_odd, n_trials=6, client=client, catch=(KeyError,))


@pytest.mark.parametrize(
    ("returned", "reason"),
    [
        (math.nan, "objective returned nan; expected a finite float"),
        (math.inf, "objective returned inf; expected a finite float"),
        ("abc", "objective returned 'abc' (str); expected a float"),
        ([1.0, 2.0], "objective returned [1.0, 2.0] (list); expected a single float"),
        (None, "objective returned None without reporting any value"),
    ],
    ids=["nan", "inf", "str", "list", "none"],
)
def test_invalid_return_values_fail_with_a_reason(client, returned, reason):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.returns(returned), n_trials=2, client=client)
    assert states(study) == {"FAIL": 2}
    assert all(reason in t.user_attrs["fail_reason"] for t in study.trials)


def test_timeout_cancels_running_trials_and_returns(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.slow_reporting, timeout=3.0, client=client)  # trials run >= 10 s
    counts = states(study)
    assert counts.get("RUNNING", 0) == 0
    cancelled = [t for t in study.trials if "timeout" in t.user_attrs.get("fail_reason", "")]
    assert cancelled and all(t.state.name in ("PRUNED", "FAIL") for t in cancelled)


def test_trial_timeout_fails_overrunning_trials(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.slow_reporting, n_trials=2, trial_timeout=0.5, client=client)
    assert states(study) == {"FAIL": 2}
    assert all("trial_timeout of 0.5s exceeded" in t.user_attrs["fail_reason"] for t in study.trials)


def test_worker_side_suggest_errors_fail_the_trial(client):
    study = optuna.create_study()

    def bad_suggest(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 1.0, 0.0)  # low > high: Optuna refuses

    daskopt.optimize(study, bad_suggest, n_trials=2, client=client)
    assert states(study) == {"FAIL": 2}
