"""A worker process SIGKILLed mid-trial: the trial fails with a reason or is retried; nothing stays RUNNING."""

from __future__ import annotations

import optuna

import daskopt
from tests import trial_objectives as objectives
from tests.conftest import states


def test_killed_worker_fails_the_trial_and_the_study_finishes(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.kills_its_worker_once, n_trials=8, client=client)
    assert states(study) == {"COMPLETE": 7, "FAIL": 1}
    lost = study.trials[1]
    assert lost.state.name == "FAIL"
    assert "trial lost" in lost.user_attrs["fail_reason"]


def test_killed_worker_trial_is_retried_with_the_same_params(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.kills_its_worker_once, n_trials=8, client=client, max_retries=1)
    counts = states(study)
    assert counts == {"COMPLETE": 8, "FAIL": 1}  # 8 outcomes + the lost attempt
    lost = study.trials[1]
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state.name == "COMPLETE"
    assert retry.params == lost.params
    assert retry.user_attrs["attempt"] == 1
