"""A worker process SIGKILLed mid-trial: the trial fails with a reason or is retried; nothing stays RUNNING."""

from __future__ import annotations

import os
import time

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


def test_hung_objective_past_trial_timeout_gets_its_worker_restarted(client):
    pids_before = set(client.run(os.getpid).values())
    study = optuna.create_study()
    config = {"trial_timeout": 1.0, "hung_grace_s": 1.0}
    daskopt.optimize(study, objectives.hangs_without_checking, n_trials=4, client=client, n_concurrent=2, **config)
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}
    assert "trial_timeout of 1s exceeded" in study.trials[0].user_attrs["fail_reason"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and set(client.run(os.getpid).values()) >= pids_before:
        time.sleep(0.2)  # the restart runs in the background; wait for the new process
    assert set(client.run(os.getpid).values()) - pids_before, "the hung worker process was not replaced"
