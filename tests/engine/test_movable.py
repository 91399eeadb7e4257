"""Trials that pause, resume and start from a checkpoint, on a real cluster (engine/movable.py)."""

from __future__ import annotations

import time

import optuna
import pytest
from distributed import Client, LocalCluster

import daskopt
from daskopt import attributes
from daskopt.schedulers import PB2, PBT, PromotionASHA, Replay, schedule
from tests import trial_objectives as objectives
from tests.conftest import states

STEPS = list(range(objectives.ACCUMULATE_STEPS))


def _nop_study(**kwargs):
    return optuna.create_study(
        pruner=optuna.pruners.NopPruner(), sampler=optuna.samplers.RandomSampler(seed=7), **kwargs
    )


def _plain_optuna_values(xs):
    """The same objective in plain Optuna, run to its end for each x."""
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    for x in xs:
        study.enqueue_trial({"x": x})
    study.optimize(objectives.accumulates, n_trials=len(xs))
    return [t.value for t in study.trials]


@pytest.mark.parametrize("channel", ["direct", "relay"])  # relayed, every message goes through the scheduler
def test_promotion_asha_pauses_and_resumes_trials_without_repeating_work(client, tmp_path, channel):
    study = _nop_study()
    daskopt.optimize(
        study,
        objectives.accumulates,
        n_trials=12,
        n_concurrent=2,
        client=client,
        channel=channel,
        scheduler=PromotionASHA(max_resource=8),
        tracking={"checkpoint_dir": tmp_path},
        show_progress_bar=False,
    )
    counts = states(study)
    assert counts.get("RUNNING", 0) == 0 and counts.get("FAIL", 0) == 0
    assert counts["COMPLETE"] + counts["PRUNED"] == 12
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    resumed = [t for t in complete if t.user_attrs.get(attributes.PAUSED_AT)]
    assert resumed, "no trial was paused and then promoted"
    for trial in complete:
        assert trial.user_attrs["ran"] == len(STEPS)  # each step computed once, across pauses and workers
        assert sorted(trial.intermediate_values) == STEPS
        assert trial.user_attrs.get(attributes.SUSPENDED) in (None, False)
    assert [t.value for t in complete] == pytest.approx(_plain_optuna_values([t.params["x"] for t in complete]))
    for trial in study.trials:
        if trial.state.name == "PRUNED":  # paused when the study ended: its last report is its value
            assert trial.user_attrs[attributes.SUSPENDED] is True
            last = max(trial.intermediate_values)
            assert trial.user_attrs[attributes.PAUSED_AT][-1] == last
            assert trial.value == trial.intermediate_values[last]


def test_a_lost_trial_resumes_from_its_last_checkpoint_with_its_reports(client, tmp_path):
    study = _nop_study()
    study.enqueue_trial({"x": 0.5}, user_attrs={"kill_at": 5})
    daskopt.optimize(
        study,
        objectives.accumulates,
        n_trials=2,
        client=client,
        failures={"max_retries": 1},
        tracking={"checkpoint_dir": tmp_path},
        show_progress_bar=False,
    )
    lost = study.trials[0]
    retry = next(t for t in study.trials if t.user_attrs.get(attributes.RETRY_OF) == 0)
    assert lost.state.name == "FAIL" and sorted(lost.intermediate_values) == [0, 1, 2, 3, 4]
    assert retry.state.name == "COMPLETE"
    assert retry.user_attrs[attributes.RESTORE] == [0, 0, 4]
    assert retry.user_attrs["ran"] == len(STEPS)  # steps 0-4 came from the checkpoint, 5-8 ran again
    assert retry.intermediate_values == pytest.approx(
        {**lost.intermediate_values, **{s: v for s, v in retry.intermediate_values.items() if s > 4}}
    )
    assert retry.value == pytest.approx(_plain_optuna_values([0.5])[0])


def test_a_missing_checkpoint_fails_that_trial_and_the_rest_go_on(client, tmp_path):
    study = _nop_study()
    study.enqueue_trial({"x": 1.5})
    study.enqueue_trial({"x": 0.5}, user_attrs={attributes.RESTORE: [0, 0, 77]})
    daskopt.optimize(
        study,
        objectives.accumulates,
        n_trials=4,
        client=client,
        tracking={"checkpoint_dir": tmp_path},
        show_progress_bar=False,
    )
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}
    reason = study.trials[1].user_attrs[attributes.FAIL_REASON]
    assert "checkpoint missing" in reason and "step-00000077" in reason


@pytest.mark.parametrize(
    "make_study, tracking, message",
    [
        (
            lambda: optuna.create_study(pruner=optuna.pruners.SuccessiveHalvingPruner()),
            {"checkpoint_dir": "x"},
            "and the study's pruner SuccessiveHalvingPruner would both decide",
        ),
        (_nop_study, {}, "there is no checkpoint folder: pass tracking=daskopt.Tracking"),
        (
            lambda: optuna.create_study(directions=["minimize", "minimize"]),
            {"checkpoint_dir": "x"},
            "needs a single-objective study",
        ),
    ],
)
def test_a_scheduler_that_cannot_run_is_a_one_line_error_before_anything_starts(make_study, tracking, message):
    with pytest.raises(ValueError, match=message) as error:
        daskopt.optimize(
            make_study(), objectives.accumulates, n_trials=1, scheduler=PromotionASHA(9), tracking=tracking
        )
    assert "\n" not in str(error.value)


def test_optunas_default_pruner_is_left_aside_by_a_scheduler(client, tmp_path):
    study = optuna.create_study()  # MedianPruner(), Optuna's default: not a choice the user made
    daskopt.optimize(
        study,
        objectives.accumulates,
        n_trials=3,
        client=client,
        scheduler=PromotionASHA(max_resource=8),
        tracking={"checkpoint_dir": tmp_path},
        show_progress_bar=False,
    )
    assert sum(states(study).values()) == 3


def _pbt_run(client, tmp_path, scheduler, n_trials, study=None):
    study = study or optuna.create_study(
        pruner=optuna.pruners.NopPruner(), sampler=optuna.samplers.RandomSampler(seed=3)
    )
    daskopt.optimize(
        study,
        objectives.noisy_sgd,
        n_trials=n_trials,
        n_concurrent=3,
        client=client,
        scheduler=scheduler,
        tracking={"checkpoint_dir": tmp_path},
        show_progress_bar=False,
    )
    return study


LAST = objectives.SGD_STEPS - 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: PBT(perturbation_interval=5, last_step=LAST, seed=1),
        lambda: PBT(perturbation_interval=5, synchronous=True, last_step=LAST, seed=1),
        lambda: PB2(perturbation_interval=5, last_step=LAST, seed=1),
    ],
    ids=["pbt", "pbt-synchronous", "pb2"],
)
def test_pbt_members_go_on_from_better_members_and_their_schedule_replays(client, tmp_path, make):
    study = _pbt_run(client, tmp_path / "pbt", make(), n_trials=6)
    counts = states(study)
    assert counts["COMPLETE"] == 6 and counts.get("FAIL", 0) == 0 and counts.get("RUNNING", 0) == 0
    assert counts["PRUNED"] >= 1, "no member exploited another"
    by_number = {t.number: t for t in study.trials}
    assert attributes.outcomes(study.trials) == 6  # stretches that were continued are no outcomes
    for trial in study.trials:
        parent = trial.user_attrs.get(attributes.PARENT)
        if parent is None:
            continue
        _, _, step = trial.user_attrs[attributes.RESTORE]
        assert by_number[trial.user_attrs[attributes.CONTINUES]].state.name == "PRUNED"
        # its curve is whole: the parent's reports up to the checkpoint, then its own
        assert sorted(trial.intermediate_values)[: step + 1] == list(range(step + 1))
        assert {s: trial.intermediate_values[s] for s in range(step + 1)} == pytest.approx(
            {s: by_number[parent].intermediate_values[s] for s in range(step + 1)}
        )
        assert 1e-3 <= trial.params["lr"] <= 1.0
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            assert sorted(trial.intermediate_values) == list(range(objectives.SGD_STEPS))
    best = study.best_trial
    rows = schedule(study, best.number)
    assert rows[0]["from_step"] == 0 and len(rows) >= 1
    replayed = _pbt_run(client, tmp_path / "replay", Replay(rows), n_trials=1)
    assert replayed.best_value == pytest.approx(best.value, rel=1e-9)  # the schedule alone gives the result


def test_a_trial_a_dead_driver_left_running_goes_on_with_its_reports_from_its_newest_checkpoint(client, tmp_path):
    from daskopt.runner.recovery import recover_interrupted
    from daskopt.trial import checkpoints

    study = _nop_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(-3, 3)})  # left RUNNING: reports 0-4 ...
    x, state = trial.params["x"], {"total": 0.0, "ran": 0}
    for step in range(5):
        state["total"] += (x - 1) ** 2 / (step + 1)
        state["ran"] += 1
        trial.report(state["total"], step)
    with checkpoints.writing(tmp_path / "trial-0", 4) as folder:  # ... and a checkpoint of step 4
        checkpoints.save_state(folder, state)
    assert recover_interrupted(study) == 1
    daskopt.optimize(study, objectives.accumulates, n_trials=1, client=client, tracking={"checkpoint_dir": tmp_path})
    new = study.trials[1]
    assert new.user_attrs[attributes.RESTORE] == [0, 0, None]  # the newest there, found by the task
    assert new.state.name == "COMPLETE" and new.user_attrs["ran"] == len(STEPS)
    assert sorted(new.intermediate_values) == STEPS  # steps 0-4 carried, once the task said where it started
    assert new.value == pytest.approx(_plain_optuna_values([x])[0])


class _SlowRandom(optuna.samplers.RandomSampler):
    """Over 0.5 ms an ask: the engine samples on its thread and keeps trials asked ahead of free slots."""

    def before_trial(self, study, trial):
        time.sleep(0.003)
        super().before_trial(study, trial)


class _WatchedASHA(PromotionASHA):
    """Promotion ASHA that keeps the trials promotable while paused, as of its latest decision.

    As of the latest one only: a trial promotable while every slot was busy may drop out of its rung's top
    as better trials reach the rung, and is then rightly left paused."""

    def start(self, *args, **kwargs):
        super().start(*args, **kwargs)
        self.waiting: set[int] = set()

    def _note(self):
        self.waiting = {
            n
            for rung in range(len(self.rungs.steps))
            for n in self.rungs.top(rung)
            if self.paused.get(n) == rung and n not in self.rungs.promoted[rung]
        }

    def decide(self, report):
        decision = super().decide(report)
        self._note()
        return decision

    def suspended(self, number, step):
        super().suspended(number, step)
        self._note()

    def resume_next(self):
        number = super().resume_next()
        self.waiting.discard(number)
        return number


@pytest.fixture(scope="module")
def eight_slots():
    with (
        LocalCluster(n_workers=2, threads_per_worker=4, dashboard_address=":0", silence_logs=40) as cluster,
        Client(cluster) as client,
    ):
        yield client


def test_trials_asked_ahead_do_not_keep_a_promotable_trial_paused(eight_slots, tmp_path):
    scheduler = _WatchedASHA(max_resource=8)
    study = optuna.create_study(sampler=_SlowRandom(seed=0), pruner=optuna.pruners.NopPruner())
    daskopt.optimize(
        study,
        objectives.accumulates,
        n_trials=60,
        n_concurrent=8,
        client=eight_slots,
        scheduler=scheduler,
        tracking={"checkpoint_dir": tmp_path},
        show_progress_bar=False,
    )
    assert scheduler.waiting == set()  # every trial promotable while paused at the end was resumed
    assert sum(1 for t in study.trials if t.state.name == "COMPLETE" and t.user_attrs.get("paused_at")) >= 1
