"""A worker process SIGKILLed mid-trial: the trial fails with a reason or is retried; nothing stays RUNNING."""

from __future__ import annotations

import os
import time

import optuna
import pytest

import daskopt
from tests import trial_objectives as objectives
from tests.conftest import states

# Every failure path runs on both trial channels: the relay through the scheduler must end trials exactly as
# the direct channel does (a closed connection, a retry, a restarted worker).
CHANNELS = pytest.mark.parametrize("channel", ["direct", "relay"])


@CHANNELS
def test_killed_worker_fails_the_trial_and_the_study_finishes(client, channel):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.kills_its_worker_once, n_trials=8, client=client, channel=channel)
    assert states(study) == {"COMPLETE": 7, "FAIL": 1}
    lost = study.trials[1]
    assert lost.state.name == "FAIL"
    assert "trial lost" in lost.user_attrs["fail_reason"]


@CHANNELS
def test_killed_worker_trial_is_retried_with_the_same_params(client, channel):
    study = optuna.create_study()
    daskopt.optimize(
        study, objectives.kills_its_worker_once, n_trials=8, client=client, failures={"max_retries": 1}, channel=channel
    )
    counts = states(study)
    assert counts == {"COMPLETE": 8, "FAIL": 1}  # 8 outcomes + the lost attempt
    lost = study.trials[1]
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state.name == "COMPLETE"
    assert retry.params == lost.params
    assert retry.user_attrs["attempt"] == 1


@pytest.mark.slow  # make test-fast leaves it out; make test runs it
def test_hung_objective_past_trial_timeout_gets_its_worker_restarted(client, channel="direct"):
    """(The relayed case is in tests/relay: a second nanny restart on one LocalCluster sometimes never brings
    its worker back, on either channel, so each cluster restarts one worker.)"""
    pids_before = set(client.run(os.getpid).values())
    study = optuna.create_study()
    config = {"trial_timeout": 3.0, "hung_grace_s": 1.0}  # room for the instant trials on a slow machine
    daskopt.optimize(
        study,
        objectives.hangs_without_checking,
        n_trials=4,
        client=client,
        n_concurrent=2,
        failures=config,
        channel=channel,
    )
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}
    assert "trial_timeout of 3s exceeded" in study.trials[0].user_attrs["fail_reason"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(client.run(os.getpid).values()) - pids_before:
        time.sleep(0.2)  # the restart runs in the background; wait for the new process to join
    assert set(client.run(os.getpid).values()) - pids_before, "the hung worker process was not replaced"


def test_retried_trial_resumes_from_the_checkpoint_of_the_attempt_it_replaces(client, tmp_path):
    study = optuna.create_study()
    daskopt.optimize(
        study,
        objectives.resumes_from_checkpoint,
        n_trials=3,
        client=client,
        failures={"max_retries": 1},
        tracking={"checkpoint_dir": tmp_path},
    )
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state.name == "COMPLETE"
    assert retry.user_attrs["resumed_from"] == 5  # killed at epoch 5 of 10, resumed there
    assert retry.user_attrs["checkpoint_of"] == 0
    assert (tmp_path / "trial-0" / "state.txt").read_text() == "10"
    others = [t for t in study.trials if t.number != 0 and "retry_of" not in t.user_attrs]
    assert all(t.user_attrs["resumed_from"] == 0 for t in others)


def test_checkpoint_dir_unset_is_a_clear_error(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.resumes_from_checkpoint, n_trials=1, client=client)
    assert "checkpoint_dir is not configured" in study.trials[0].user_attrs["fail_reason"]
