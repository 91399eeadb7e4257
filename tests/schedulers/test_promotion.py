"""Promotion-type ASHA and Hyperband, decided on reports alone (no cluster): rungs, pauses, promotions."""

from __future__ import annotations

import math

import optuna
import pytest

from daskopt.schedulers import CONTINUE, PRUNE, SUSPEND, PromotionASHA, PromotionHyperband, Report


def _started(scheduler, direction="minimize", trials=()):
    study = optuna.create_study(direction=direction, pruner=optuna.pruners.NopPruner())
    scheduler.start(study, list(trials), n_concurrent=4)
    return scheduler


def _report(number, step, value, checkpointed=True):
    return Report(number, step, value, step if checkpointed else None, {}, {})


def test_rungs_follow_min_resource_and_eta():
    assert PromotionASHA(max_resource=27).rungs.steps == [1, 3, 9]
    assert PromotionASHA(max_resource=100, min_resource=2, reduction_factor=4).rungs.steps == [2, 8, 32]
    assert PromotionASHA(max_resource=27, min_early_stopping_rate=1).rungs.steps == [3, 9]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_resource": 0}, "max_resource"),
        ({"max_resource": 9, "reduction_factor": 1}, "reduction_factor"),
        ({"max_resource": 3, "min_resource": 5}, "min_resource"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromotionASHA(**kwargs)


def test_a_trial_pauses_at_a_rung_unless_it_is_in_the_top_third():
    asha = _started(PromotionASHA(max_resource=9))
    assert asha.decide(_report(0, 0, 5.0)) == CONTINUE  # below the first rung
    assert asha.decide(_report(0, 1, 5.0)) == SUSPEND  # 1 recorded: top third is empty
    asha.suspended(0, 1)
    assert asha.decide(_report(1, 1, 4.0)) == SUSPEND
    asha.suspended(1, 1)
    # a third result makes the best of three promotable: the new one is it, so it goes on at once
    assert asha.decide(_report(2, 1, 1.0)) == CONTINUE
    assert asha.resume_next() is None  # trial 2 took the only promotion of rung 0
    assert asha.decide(_report(3, 1, 3.0)) == SUSPEND
    asha.suspended(3, 1)
    assert asha.decide(_report(4, 1, 9.0)) == SUSPEND
    asha.suspended(4, 1)
    assert asha.decide(_report(5, 1, 8.0)) == SUSPEND  # six results: the top two are 2 (taken) and 3
    asha.suspended(5, 1)
    assert asha.resume_next() == 3
    assert asha.resume_next() is None


def test_higher_rungs_are_promoted_first_and_the_full_budget_runs_on():
    asha = _started(PromotionASHA(max_resource=9))

    def report(number, step, value):
        decision = asha.decide(_report(number, step, value))
        if decision == SUSPEND:
            asha.suspended(number, step)
        return decision

    assert [report(n, 1, v) for n, v in enumerate([3.0, 2.0, 1.0, 4.0, 5.0, 6.0])] == [
        SUSPEND,
        SUSPEND,
        CONTINUE,
        SUSPEND,
        SUSPEND,
        SUSPEND,
    ]
    assert asha.resume_next() == 1  # rung 0's top two: 2 (went on at once) and 1
    assert [report(n, 3, v) for n, v in [(2, 0.5), (1, 0.7), (6, 0.9)]] == [SUSPEND, SUSPEND, SUSPEND]
    assert [report(n, 1, v) for n in (7, 8, 9) for v in [7.0 + n]] == [SUSPEND] * 3  # rung 0: top 3 now
    assert asha.resume_next() == 2  # rung 1's best comes before rung 0's next (trial 0)
    assert asha.resume_next() == 0
    assert asha.resume_next() is None
    assert asha.decide(_report(2, 9, 0.1)) == CONTINUE  # the full budget: it runs to its end


def test_maximize_and_nan_rank_as_optuna_does():
    asha = _started(PromotionASHA(max_resource=9), direction="maximize")
    for number, value in enumerate([math.nan, 1.0]):
        assert asha.decide(_report(number, 1, value)) == SUSPEND
        asha.suspended(number, 1)
    assert asha.decide(_report(2, 1, 0.5)) == SUSPEND
    asha.suspended(2, 1)
    assert asha.resume_next() == 1  # the largest; NaN is the worst


def test_without_a_checkpoint_at_the_rung_a_trial_is_stopped_with_one_warning(caplog):
    asha = _started(PromotionASHA(max_resource=9))
    assert asha.decide(_report(0, 1, 5.0, checkpointed=False)) == PRUNE
    assert asha.decide(_report(1, 1, 6.0, checkpointed=False)) == PRUNE
    warnings = [r for r in caplog.records if "without a checkpoint" in r.getMessage()]
    assert len(warnings) == 1


def test_a_rerun_rebuilds_the_rungs_from_finished_trials():
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    for value in (1.0, 2.0, 3.0):
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    asha = PromotionASHA(max_resource=9)
    asha.start(study, study.get_trials(), n_concurrent=2)
    assert asha.rungs.values[0] == {0: 1.0, 1: 2.0, 2: 3.0}
    assert asha.decide(_report(3, 1, 0.5)) == CONTINUE  # the best of four is promotable: it goes on
    assert asha.decide(_report(4, 1, 0.7)) == SUSPEND


def test_hyperband_spreads_new_trials_over_brackets():
    hyperband = _started(PromotionHyperband(max_resource=27))
    assert [b.rungs.steps for b in hyperband.brackets] == [[1, 3, 9], [3, 9], [9]]
    counts = [0, 0, 0]
    for number in range(100):
        counts[hyperband.brackets.index(hyperband._bracket(number))] += 1
    assert counts[0] > counts[1] > counts[2] > 0


def test_hyperband_keeps_a_retry_in_the_bracket_of_its_first_attempt():
    hyperband = _started(PromotionHyperband(max_resource=9))  # brackets [1, 3] and [3]
    assert hyperband._bracket(13) is hyperband.brackets[1]  # by its own number it would be elsewhere
    hyperband.adopted(20, {0: 0.0, 1: 0.0}, paused_at=1, origin=2)  # trial 2's new attempt, paused at step 1
    assert hyperband._bracket(20) is hyperband._bracket(2) is hyperband.brackets[0]
    for number in (0, 1, 3, 4, 5):
        hyperband.decide(_report(number, 1, 10.0 + number))
        hyperband.suspended(number, 1)
    assert hyperband.resume_next() == 20  # the best at step 1 is resumed


def test_hyperband_errors_name_hyperband():
    with pytest.raises(ValueError, match="PromotionHyperband: max_resource"):
        PromotionHyperband(max_resource=0)
