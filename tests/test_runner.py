"""What counts as an outcome toward a study file's ``n_trials``, without Dask."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from daskopt.runner import outcomes, recover_interrupted


def _finish(study: optuna.Study, state: TrialState, **attrs: object) -> int:
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    return trial.number


def test_retried_attempts_and_unstarted_trials_are_not_outcomes():
    study = optuna.create_study()
    _finish(study, TrialState.COMPLETE)
    lost = _finish(study, TrialState.FAIL)
    _finish(study, TrialState.COMPLETE, retry_of=lost, attempt=1)
    _finish(study, TrialState.FAIL, not_started=True)
    _finish(study, TrialState.PRUNED)
    assert outcomes(study) == 3


def test_trials_left_running_are_failed_and_their_params_re_enqueued():
    study = optuna.create_study()
    stale = study.ask()
    stale.suggest_float("x", 0, 1)
    assert recover_interrupted(study) == 1
    failed, waiting = study.trials
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"].startswith("interrupted")
    assert waiting.state == TrialState.WAITING and waiting.user_attrs["retry_of"] == stale.number
    assert waiting.system_attrs["fixed_params"] == failed.params
