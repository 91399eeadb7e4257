"""``optimize()`` refuses wrong arguments before anything starts, naming the argument."""

from __future__ import annotations

import re
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution

import daskopt
from tests import trial_objectives as objectives

BAD = [
    ({"n_trials": -1}, ValueError, "daskopt.optimize: n_trials must be an int >= 1"),
    ({"n_trials": 0}, ValueError, "n_trials must be an int >= 1"),
    ({"n_trials": "5"}, TypeError, "n_trials must be an int >= 1"),
    ({"n_trials": 2.0}, TypeError, "n_trials must be an int >= 1"),
    ({"n_concurrent": 0}, ValueError, "n_concurrent must be an int >= 1"),
    ({"failures": {"max_retries": -1}}, ValueError, "daskopt.Failures: max_retries must be an int >= 0"),
    ({"failures": {"retries": 1}}, TypeError, "daskopt.Failures: unknown field.*retries.*valid: fail_fast"),
    ({"failures": 3}, TypeError, "failures must be a daskopt.Failures"),
    ({"trials": {"repeats": -1}}, ValueError, "daskopt.TrialOptions: repeats must be an int >= 0"),
    ({"trials": {"report_last_n": 0}}, ValueError, "report_last_n must be an int >= 1"),
    ({"timeout": -1}, ValueError, "timeout must be a number of seconds > 0"),
    ({"timeout": "10"}, TypeError, "timeout must be a number of seconds > 0"),
    ({"failures": {"trial_timeout": 0}}, ValueError, "trial_timeout must be a number of seconds > 0"),
    ({"failures": {"heartbeat_timeout": 0}}, ValueError, "heartbeat_timeout must be a number of seconds > 0"),
    ({"failures": {"heartbeat_timeout": -5}}, ValueError, "heartbeat_timeout must be a number of seconds > 0"),
    ({"trials": {"chain_below_s": "x"}}, TypeError, "chain_below_s must be a number of seconds >= 0"),
    ({"resources": {"gpus_per_trial": 0}}, ValueError, "daskopt.Resources: gpus_per_trial must be an int >= 1"),
    ({"resources": {"gpu_memory_fraction": 1.5}}, ValueError, r"gpu_memory_fraction must be a number in \(0, 1\]"),
    ({"tracking": {"wandb": "yes"}}, TypeError, "daskopt.Tracking: wandb must be True, False, None or a dict"),
    ({"tracking": {"loggers": [print]}}, TypeError, "daskopt.Tracking: loggers must be"),
    ({"catch": "ValueError"}, TypeError, "catch must be an exception class or a tuple of them"),
    ({"catch": (ValueError, "x")}, TypeError, "catch must be an exception class or a tuple of them"),
    ({"callbacks": [1]}, TypeError, "callbacks must be a sequence of callables"),
    ({"search_space": {"x": (-1, 1)}}, TypeError, "search_space must be a dict of name -> optuna distribution"),
    ({"search_space": [FloatDistribution(0, 1)]}, TypeError, "search_space must be a dict"),
    ({"client": "tcp://127.0.0.1:8786"}, TypeError, "client must be a dask.distributed.Client or None"),
    ({"dashboard": "yes"}, TypeError, "dashboard must be True, False, None, a dict or a daskopt.Dashboard"),
    ({"dashboard": {"prot": 1}}, ValueError, "daskopt.Dashboard: unknown option"),
    ({"show_progress_bar": 1}, TypeError, "show_progress_bar must be True or False"),
    ({"objective": 42}, TypeError, "objective must be a callable"),
]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: daskopt.Timeout(0), "daskopt.Timeout: seconds must be a number of seconds > 0, got 0"),
        (lambda: daskopt.Timeout(5, hard="yes"), "daskopt.Timeout: hard must be True or False"),
        (lambda: daskopt.Failures(fail_fast=0), "daskopt.Failures: fail_fast must be an int >= 1 or None, got 0"),
        (lambda: daskopt.Dashboard(port=70000), "daskopt.Dashboard: port must be an int in 0..65535"),
    ],
)
def test_settings_objects_check_themselves_when_built(build, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        build()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"), BAD, ids=[next(iter(k)) + "-" + str(i) for i, (k, _, _) in enumerate(BAD)]
)
def test_wrong_argument_is_refused_at_once_with_its_name(kwargs, error, message):
    kwargs = {"n_trials": 1, **kwargs}
    objective = kwargs.pop("objective", objectives.quadratic)
    message = message if "\\" in message or ".*" in message else re.escape(message)
    started = time.monotonic()
    with pytest.raises(error, match=message):
        daskopt.optimize(optuna.create_study(), objective, **kwargs)
    assert time.monotonic() - started < 5  # refused before a cluster starts (which takes seconds)


def test_catch_accepts_a_class_or_a_tuple_of_classes():
    from daskopt.arguments import check_catch

    assert check_catch(ValueError) == (ValueError,)
    assert check_catch((ValueError, KeyError)) == (ValueError, KeyError)
    assert check_catch(()) == ()


def test_errors_pass_through_when_a_default_client_is_used(client):
    """With a default client (no ``client=``), the call's own errors reach the caller unchanged."""
    study = optuna.create_study()
    with pytest.raises(daskopt.ObjectiveError, match="odd"):
        daskopt.optimize(study, objectives.raises_on_odd, n_trials=4, n_concurrent=1, catch=(), show_progress_bar=False)


def test_the_default_client_context_lets_the_callers_errors_through(client):
    from daskopt.api import _client_for

    with pytest.raises(ValueError, match="the caller's own"), _client_for(None) as active:
        assert active is client  # the default client, not a new LocalCluster
        raise ValueError("the caller's own error")


def test_callbacks_may_be_any_iterable_of_callables(client):
    seen: list[int] = []
    study = optuna.create_study()
    callbacks = (cb for cb in [lambda study, trial: seen.append(trial.number)])  # read once, all the same
    daskopt.optimize(study, objectives.quadratic, n_trials=3, client=client, callbacks=callbacks)
    assert sorted(seen) == [0, 1, 2]
