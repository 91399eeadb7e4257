"""The attribute rules every part shares: how a trial is enqueued again, and what is an outcome."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from daskopt import attributes


@pytest.mark.parametrize(
    ("attrs", "next_attempt", "restore_step", "expected"),
    [
        ({}, None, None, {"retry_of": 0, "checkpoint_of": 0, "restore": [0, 0, None]}),
        (
            {"seed": 7, "fail_reason": "lost", "traceback": "..."},
            1,
            4,
            {"seed": 7, "retry_of": 0, "checkpoint_of": 0, "attempt": 1, "restore": [0, 0, 4]},
        ),
        (
            {"retry_of": 3, "checkpoint_of": 3, "attempt": 1},
            2,
            None,
            {"retry_of": 0, "checkpoint_of": 3, "attempt": 2, "restore": [0, 3, None]},
        ),
        (
            {"attempt": 1, "checkpoint_of": 3},
            None,
            None,
            {"retry_of": 0, "checkpoint_of": 3, "attempt": 1, "restore": [0, 3, None]},
        ),
    ],
    ids=["first", "diagnostics-dropped", "second-retry-keeps-the-first-checkpoint", "interrupt-keeps-attempt"],
)
def test_requeue_carries_the_attributes_a_new_attempt_needs(attrs, next_attempt, restore_step, expected):
    """``restore``: the reports of trial 0 are carried, from the first attempt's folder, up to the step of
    the checkpoint it starts from (``None``: the newest there, found when it starts)."""
    study = optuna.create_study()
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    attributes.requeue(study, trial.number, trial.params, attrs, next_attempt=next_attempt, restore_step=restore_step)
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    assert waiting.user_attrs == expected
    assert waiting.system_attrs["fixed_params"] == {"x": x}


def test_an_outcome_is_a_finished_trial_no_retry_replaced():
    study = optuna.create_study()
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
        study.tell(study.ask(), 1.0 if state == TrialState.COMPLETE else None, state=state)
    lost = study.trials[1]
    attributes.requeue(study, lost.number, lost.params, lost.user_attrs, next_attempt=1)
    study.tell(study.ask(), 2.0)  # runs the enqueued retry
    trials = study.get_trials()
    replaced = attributes.replaced_numbers(trials)
    assert replaced == {1}
    assert [attributes.is_outcome(t, replaced) for t in trials] == [True, False, True, True]
    assert attributes.outcomes(trials) == 3
