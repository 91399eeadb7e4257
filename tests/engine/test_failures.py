"""Failure outcomes: objective errors, bad return values, study timeout, trial timeout."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from distributed import Client

import daskopt
from tests import trial_objectives as objectives
from tests.conftest import local_client, states


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


@pytest.mark.slow  # make test-fast leaves it out; make test runs it
def test_timeout_lets_running_trials_finish_as_optuna_does(client):
    study = optuna.create_study()
    started = time.monotonic()
    daskopt.optimize(study, objectives.slow_reporting, timeout=3.0, client=client)  # trials run ~10 s
    assert time.monotonic() - started > 5  # the running trials were not cut at the deadline
    assert states(study) == {"COMPLETE": 2}  # one per slot: nothing asked after the deadline, nothing left behind


def test_hard_timeout_stops_running_trials_and_enqueues_them_again(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.slow_reporting, timeout=daskopt.Timeout(3.0, hard=True), client=client)
    cut = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(cut) == 2 and all(t.user_attrs["fail_reason"] == "interrupted: timeout of 3s reached" for t in cut)
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert sorted(t.system_attrs["fixed_params"]["x"] for t in waiting) == sorted(t.params["x"] for t in cut)
    assert {t.user_attrs["retry_of"] for t in waiting} == {t.number for t in cut}
    assert not any(t.state.name in ("RUNNING", "PRUNED") for t in study.trials)


def test_trial_timeout_fails_overrunning_trials(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.slow_reporting, n_trials=2, failures={"trial_timeout": 0.5}, client=client)
    assert states(study) == {"FAIL": 2}
    assert all("trial_timeout of 0.5s exceeded" in t.user_attrs["fail_reason"] for t in study.trials)


def test_worker_side_suggest_errors_fail_the_trial(client):
    study = optuna.create_study()

    def bad_suggest(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 1.0, 0.0)  # low > high: Optuna refuses

    daskopt.optimize(study, bad_suggest, n_trials=2, client=client)
    assert states(study) == {"FAIL": 2}


def test_sys_exit_in_an_objective_is_its_error_not_a_lost_trial(client):
    """Not an ``Exception``: it stops the study as in Optuna, recorded as what it is."""
    study = optuna.create_study()
    with pytest.raises(daskopt.ObjectiveError, match="SystemExit: 3"):
        daskopt.optimize(study, objectives.exits_on_trial_1, n_trials=4, client=client, n_concurrent=1)
    assert study.trials[1].state.name == "FAIL"
    assert study.trials[1].user_attrs["fail_reason"] == "SystemExit: 3"


def test_sys_exit_is_caught_when_catch_names_it(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.exits_on_trial_1, n_trials=4, client=client, catch=(Exception, SystemExit))
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}


@pytest.mark.parametrize("fail_fast", [5, None], ids=["stops", "off"])
def test_fail_fast_stops_a_call_whose_first_trials_all_fail_the_same_way(client, fail_fast):
    study = optuna.create_study()
    call = dict(n_trials=12, client=client, n_concurrent=1, failures={"fail_fast": fail_fast})
    if fail_fast is None:
        daskopt.optimize(study, objectives.returns(None), **call)
        assert states(study) == {"FAIL": 12}
        return
    with pytest.raises(
        daskopt.ObjectiveError, match=r"returned None .*\(and so did the 4 trials before it: fail_fast\)"
    ):
        daskopt.optimize(study, objectives.returns(None), **call)
    assert states(study) == {"FAIL": 5}


def test_fail_fast_ignores_failures_once_a_trial_completed(client):
    study = optuna.create_study()
    daskopt.optimize(
        study, objectives.raises_on_odd, n_trials=14, client=client, n_concurrent=1, failures={"fail_fast": 2}
    )
    assert states(study) == {"COMPLETE": 7, "FAIL": 7}


class RaisesOnTrial3(optuna.pruners.BasePruner):
    """A pruner with a bug that shows on one trial only."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if trial.number == 3:
            raise RuntimeError("pruner broke on trial 3")
        return False


@pytest.fixture(scope="module")
def one_process() -> Iterator[Client]:
    """One worker process running four trials at once: they share its connection to the loop."""
    with local_client(1, 4) as c:
        yield c


def test_a_pruner_error_fails_only_the_trial_it_decided_for_as_in_optuna(one_process):
    plain = optuna.create_study(pruner=RaisesOnTrial3())
    plain.optimize(objectives.checks_pruning, n_trials=8, catch=(RuntimeError,))
    ours = optuna.create_study(pruner=RaisesOnTrial3())
    daskopt.optimize(
        ours, objectives.checks_pruning, n_trials=8, n_concurrent=4, client=one_process, catch=(RuntimeError,)
    )

    for study in (plain, ours):  # the three trials running beside it on the same process are untouched
        assert states(study) == {"COMPLETE": 7, "FAIL": 1}
        assert [t.number for t in study.trials if t.state.name == "FAIL"] == [3]
    failed = ours.trials[3]
    assert failed.user_attrs["fail_reason"] == "RuntimeError: pruner broke on trial 3"
    assert "pruner broke on trial 3" in failed.user_attrs["traceback"]
    assert len(failed.intermediate_values) == 1  # it failed at its first question, as in Optuna
    assert len(plain.trials[3].intermediate_values) == 1


def test_an_uncaught_pruner_error_stops_the_study_as_in_optuna(one_process):
    plain = optuna.create_study(pruner=RaisesOnTrial3())
    with pytest.raises(RuntimeError, match="pruner broke on trial 3"):
        plain.optimize(objectives.checks_pruning, n_trials=8)
    ours = optuna.create_study(pruner=RaisesOnTrial3())
    with pytest.raises(daskopt.ObjectiveError, match=r"^trial 3 raised RuntimeError: pruner broke on trial 3$"):
        daskopt.optimize(ours, objectives.checks_pruning, n_trials=8, n_concurrent=4, client=one_process, catch=())

    for study in (plain, ours):
        assert study.trials[3].state.name == "FAIL"
        assert states(study).get("RUNNING", 0) == 0
        assert len(study.trials) < 8


class FailsToRecordTrial2(optuna.storages.InMemoryStorage):
    """A storage that fails the write that ends trial 2 (a database gone away, a disk full)."""

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState, values: Any = None) -> bool:
        if self.get_trial_number_from_id(trial_id) == 2:
            raise OSError("the storage went away")
        return super().set_trial_state_values(trial_id, state, values)


def test_a_storage_error_recording_a_trial_stops_the_call_with_it_as_in_optuna(client):
    plain = optuna.create_study(storage=FailsToRecordTrial2())
    with pytest.raises((OSError, AssertionError)) as raised:  # Optuna 5 trips an assert of its own on the way out
        plain.optimize(objectives.quadratic, n_trials=5, catch=(Exception,))
    assert "the storage went away" in str(raised.value) + str(raised.value.__context__)
    ours = optuna.create_study(storage=FailsToRecordTrial2())
    with pytest.raises(OSError, match="the storage went away"):  # it was logged, and the call went on
        daskopt.optimize(ours, objectives.quadratic, n_trials=5, n_concurrent=1, client=client)
    assert [t.state.name for t in ours.trials] == [t.state.name for t in plain.trials]
    assert [t.state.name for t in ours.trials][:2] == ["COMPLETE", "COMPLETE"]
