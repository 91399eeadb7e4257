"""Optuna's published usage patterns, each built as the pattern builds it, run through ``daskopt.optimize``
and through plain ``study.optimize`` side by side.

Where Optuna is deterministic (seeded samplers, one trial at a time: ``n_concurrent=1``) the two storages
must hold the same trials: states, parameters, intermediate values, values. With several trials at a time
only counts and ranges are compared. Each test is small: a dozen trials, tiny data.
"""

from __future__ import annotations

import datetime
import functools

import optuna
import pytest
from optuna.pruners import (
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PatientPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
    ThresholdPruner,
    WilcoxonPruner,
)
from optuna.trial import TrialState

import daskopt
from tests.conformance import patterns
from tests.conformance.compare import (
    Runs,
    assert_same_failures,
    assert_same_trials,
    counts,
    max_overlap,
    run_both,
    run_daskopt,
    run_plain,
    study_factory,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::FutureWarning", "ignore::UserWarning", "ignore::optuna.exceptions.ExperimentalWarning"
)

RANDOM = functools.partial(optuna.samplers.RandomSampler, seed=0)

# ------------------------------------------------------------------------------------ pruning
PRUNERS = {
    "median": lambda: MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    "percentile": lambda: PercentilePruner(25.0, n_startup_trials=2, n_warmup_steps=1),
    "successive-halving": lambda: SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
    "hyperband": lambda: HyperbandPruner(min_resource=1, max_resource=8, reduction_factor=2),
    "threshold": lambda: ThresholdPruner(upper=1.1),
    "patient": lambda: PatientPruner(MedianPruner(n_startup_trials=2), patience=1),
    "wilcoxon": lambda: WilcoxonPruner(p_threshold=0.1, n_startup_steps=2),
    "nop": NopPruner,
}


def _pruning_objective(pruner: str):  # noqa: ANN202
    return patterns.instance_losses if pruner == "wilcoxon" else patterns.training_curve


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
def test_each_builtin_pruner_prunes_the_same_trials_at_the_same_steps(client, pruner):
    """One trial at a time with a seeded sampler, every built-in pruner decides as in Optuna: the same
    trials pruned after the same reports (Wilcoxon: instance ids as steps, reported in shuffled order; a
    pruned trial returns the mean so far, so it is COMPLETE with fewer reports)."""
    make = study_factory(sampler=RANDOM, pruner=PRUNERS[pruner])
    runs = run_both(make, _pruning_objective(pruner), client, n_trials=12)
    reports = [len(t.intermediate_values) for t in runs.plain.trials]
    if pruner == "wilcoxon":
        assert min(reports) < patterns.N_INSTANCES, "the scenario must prune in Optuna"
    elif pruner != "nop":
        assert counts(runs.plain).get("PRUNED", 0) > 0, "the scenario must prune in Optuna"
    assert_same_trials(runs)


@pytest.mark.parametrize("pruner", ["median", "successive-halving", "wilcoxon"])
def test_pruning_with_two_trials_at_a_time(client, pruner):
    """Concurrency changes which trials a decision sees, so only counts compare: every trial ends
    COMPLETE or PRUNED, and the pruner prunes some (Wilcoxon: stops some early) in both."""
    make = study_factory(sampler=RANDOM, pruner=PRUNERS[pruner])
    objective = _pruning_objective(pruner)
    plain, _ = run_plain(make, objective, n_trials=16, n_jobs=2)
    dask = run_daskopt(make, objective, client, n_trials=16, n_concurrent=2)
    for study in (plain, dask):
        assert len(study.trials) == 16
        assert set(counts(study)) <= {"COMPLETE", "PRUNED"}, counts(study)
        if pruner == "wilcoxon":
            assert min(len(t.intermediate_values) for t in study.trials) < patterns.N_INSTANCES
        else:
            assert counts(study).get("PRUNED", 0) > 0


# ------------------------------------------------------------------------- stopping a study
def _max_complete() -> list[optuna.study.MaxTrialsCallback]:
    return [optuna.study.MaxTrialsCallback(5, states=(TrialState.COMPLETE,))]


def _stop_after_trial_3() -> list:
    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 3:
            study.stop()

    return [stop]


STOPPERS = {"max-trials-callback": _max_complete, "study-stop": _stop_after_trial_3}


@pytest.mark.parametrize("stopper", sorted(STOPPERS))
def test_stopping_callbacks_leave_exactly_optunas_trials(client, stopper):
    """``MaxTrialsCallback`` / ``study.stop()`` in a callback: Optuna stops after that trial and stores
    nothing more (no trial asked for a slot it never got)."""
    runs = run_both(study_factory(sampler=RANDOM), patterns.sleeps, client, n_trials=20, callbacks=STOPPERS[stopper])
    assert counts(runs.plain) == {"COMPLETE": 5 if stopper == "max-trials-callback" else 4}
    assert_same_trials(runs)


def test_a_callback_that_edits_its_trial_changes_nothing_else(client):
    """Optuna's ``optimize`` hands each callback a copy of the finished trial: a callback that edits it
    changes neither the stored trial nor what the next callback sees."""
    seen: list[list[tuple]] = []  # what the second callback saw: plain Optuna's run, then daskopt's

    def callbacks() -> list:
        record: list[tuple] = []
        seen.append(record)

        def edit(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            trial.params.clear()
            trial.intermediate_values.clear()
            trial.user_attrs["edited"] = True

        def look(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            record.append(
                (trial.number, dict(trial.params), dict(trial.intermediate_values), "edited" in trial.user_attrs)
            )

        return [edit, look]

    runs = run_both(study_factory(sampler=RANDOM), patterns.training_curve, client, n_trials=4, callbacks=callbacks)
    assert_same_trials(runs)
    plain_seen, daskopt_seen = seen
    assert daskopt_seen == plain_seen
    assert all(params and curve and not edited for _, params, curve, edited in daskopt_seen)
    assert not any("edited" in trial.user_attrs for trial in runs.dask.trials)


def test_max_trials_callback_with_two_trials_at_a_time(client):
    """With two trials at a time the one still running when the fifth completes may finish too
    (``n_jobs=2`` does the same), but nothing fails and nothing is left unstarted."""
    plain, _ = run_plain(study_factory(sampler=RANDOM), patterns.sleeps, n_trials=20, callbacks=_max_complete, n_jobs=2)
    dask = run_daskopt(study_factory(sampler=RANDOM), patterns.sleeps, client, n_trials=20, n_concurrent=2,
                       callbacks=_max_complete)  # fmt: skip
    for study in (plain, dask):
        assert set(counts(study)) == {"COMPLETE"}, counts(study)
        assert 5 <= counts(study)["COMPLETE"] <= 6


def test_timeout_leaves_no_trial_that_never_ran(client):
    """``timeout``: both stop starting trials at the deadline; every stored trial ran and completed."""
    plain, _ = run_plain(study_factory(sampler=RANDOM), patterns.sleeps, n_trials=None, timeout=1.0)
    called = datetime.datetime.now()
    dask = run_daskopt(study_factory(sampler=RANDOM), patterns.sleeps, client, n_trials=None, timeout=1.0)
    deadline = called + datetime.timedelta(seconds=1.0)
    assert set(counts(plain)) == {"COMPLETE"}
    never_ran = [t.number for t in dask.trials if t.user_attrs.get("not_started")]
    assert never_ran == [], f"daskopt stored trials that never ran: {never_ran} of {counts(dask)}"
    assert set(counts(dask)) == {"COMPLETE"}, counts(dask)  # the trial running at the deadline finishes
    for study in (plain, dask):  # a count would time the machine; when each trial started is the semantics
        assert study.trials, "no trial ran before the deadline"
    # a trial asked at the deadline stores its start a moment later; a tick's worth (0.25 s) is too late
    late = [t.number for t in dask.trials if t.datetime_start > deadline + datetime.timedelta(seconds=0.1)]
    assert late == [], f"daskopt started trials after the deadline: {late}"


def test_timeout_lets_the_running_trial_finish(client):
    """Optuna's ``timeout`` starts no trial after the deadline and lets the one running then finish
    (COMPLETE, after the deadline): it is not told to stop (``should_prune()`` stays False)."""
    objective = functools.partial(patterns.reports_then_sleeps, seconds=1.5)
    plain, _ = run_plain(study_factory(sampler=RANDOM, pruner=NopPruner), objective, n_trials=None, timeout=0.5)
    dask = run_daskopt(study_factory(sampler=RANDOM, pruner=NopPruner), objective, client, n_trials=None, timeout=0.5)
    assert counts(plain) == {"COMPLETE": 1}
    assert counts(dask) == counts(plain), [t.user_attrs.get("fail_reason") for t in dask.trials]


def test_one_slot_holds_one_running_trial_as_n_jobs_1_does(client):
    """``n_jobs=1`` never holds more than one trial RUNNING; neither does ``n_concurrent=1``, even with a
    sampler slow enough to get trials asked ahead at more slots."""
    make = study_factory(sampler=patterns.SlowSampler)
    objective = functools.partial(patterns.sleeps, seconds=0.02)
    plain, _ = run_plain(make, objective, n_trials=10, n_jobs=1)
    dask = run_daskopt(make, objective, client, n_trials=10, n_concurrent=1)
    assert max_overlap(plain) == max_overlap(dask) == 1
    assert counts(dask) == {"COMPLETE": 10}


def test_slow_sampler_asks_ahead_of_free_slots_intentional_difference(client):
    """With several slots, a sampler too slow to run inline and short trials, a few trials are asked (so
    RUNNING in storage) ahead of a free slot, so no slot waits a whole ask (benchmarks: slow_sampler idle
    14% -> 4%). ``n_jobs=k`` holds at most k RUNNING. Objectives never run more than ``n_concurrent`` at
    once (tests/engine/test_asking.py), and every trial asked is run."""
    make = study_factory(sampler=patterns.SlowSampler)
    objective = functools.partial(patterns.sleeps, seconds=0.02)
    plain, _ = run_plain(make, objective, n_trials=20, n_jobs=2)
    dask = run_daskopt(make, objective, client, n_trials=20, n_concurrent=2)
    assert max_overlap(plain) <= 2
    assert max_overlap(dask) <= 2 + 1  # a quarter of the slots, at least one
    assert counts(dask) == counts(plain) == {"COMPLETE": 20}


# ------------------------------------------------------------------------------- terminator
def _terminator_callback() -> list:
    from optuna.terminator import Terminator, TerminatorCallback
    from optuna.terminator.improvement.evaluator import RegretBoundEvaluator

    terminator = Terminator(improvement_evaluator=RegretBoundEvaluator(seed=0), min_n_trials=10)
    return [TerminatorCallback(terminator)]


def test_terminator_callback_with_cross_validation_scores(client):
    """``TerminatorCallback`` with ``report_cross_validation_scores``: the scores land in the trial's
    system attributes, the error evaluator reads them, and the study stops after the same trial."""
    runs = run_both(
        study_factory(sampler=RANDOM, direction="maximize"),
        patterns.cross_validated,
        client,
        n_trials=40,
        callbacks=_terminator_callback,
    )
    assert len(runs.plain.trials) < 40, "the scenario must terminate early in Optuna"
    assert_same_trials(runs)


# ---------------------------------------------------------------------------------- samplers
def test_cma_es_warm_started_from_source_trials(client):
    source = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    source.optimize(patterns.sphere, n_trials=10)

    def make() -> optuna.Study:
        sampler = optuna.samplers.CmaEsSampler(seed=0, source_trials=source.trials)
        return study_factory(sampler=sampler)()

    runs = run_both(make, patterns.sphere_shifted, client, n_trials=14)
    assert_same_trials(runs, fields=("state", "values", "params"))
    assert runs.dask.best_value == pytest.approx(runs.plain.best_value)


def test_user_written_sampler(client):
    """A ``BaseSampler`` subclass: the same values, and its hooks called in Optuna's order (a trial's
    ``before_trial`` after the previous trial's ``after_trial``, one trial at a time)."""
    plain_sampler, dask_sampler = patterns.WalkSampler(seed=0), patterns.WalkSampler(seed=0)
    plain, _ = run_plain(study_factory(sampler=lambda: plain_sampler), patterns.mixed_space, n_trials=10)
    dask = run_daskopt(study_factory(sampler=lambda: dask_sampler), patterns.mixed_space, client, n_trials=10)
    assert_same_trials(Runs(plain, dask))
    assert dask_sampler.log == plain_sampler.log


def test_tpe_with_constraints_func(client):
    make = study_factory(
        sampler=lambda: optuna.samplers.TPESampler(
            seed=0, n_startup_trials=4, constraints_func=patterns.constraints_from_user_attrs
        )
    )
    runs = run_both(make, patterns.constrained, client, n_trials=12)
    assert_same_trials(runs)
    assert runs.dask.best_trial.number == runs.plain.best_trial.number


@pytest.mark.parametrize(
    "how",
    [
        "constraints_func",
        pytest.param(
            "set_constraint",
            marks=pytest.mark.skipif(not hasattr(optuna.trial.Trial, "set_constraint"), reason="Optuna 5 and later"),
        ),
    ],
)
def test_nsga2_with_constraints(client, how):
    by_func = how == "constraints_func"
    make = study_factory(
        sampler=lambda: optuna.samplers.NSGAIISampler(
            seed=0, population_size=4, constraints_func=patterns.constraints_from_user_attrs if by_func else None
        ),
        directions=["minimize", "minimize"],
    )
    objective = functools.partial(patterns.constrained_two_objectives, set_constraint=not by_func)
    runs = run_both(make, objective, client, n_trials=12)
    assert_same_trials(runs)
    assert [t.number for t in runs.dask.best_trials] == [t.number for t in runs.plain.best_trials]


def test_multi_objective_nsga2(client):
    make = study_factory(
        sampler=lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=4), directions=["minimize", "minimize"]
    )
    runs = run_both(make, patterns.two_objectives, client, n_trials=12)
    assert_same_trials(runs)
    assert [t.number for t in runs.dask.best_trials] == [t.number for t in runs.plain.best_trials]


# ---------------------------------------------------------------------------------- enqueue
ENQUEUED = [
    {"kind": "tree", "depth": 5, "shared": 0.0},
    {"kind": "linear", "scale": 1.0},  # partial: "shared" is sampled
    {"kind": "tree", "depth": 12, "shared": 0.5},  # depth outside 1..8: Optuna warns and uses it
]


def _with_enqueued(sampler=RANDOM):  # noqa: ANN001, ANN202
    def make() -> optuna.Study:
        study = study_factory(sampler=sampler)()
        for i, params in enumerate(ENQUEUED):
            study.enqueue_trial(params, user_attrs={"enqueued": i})
        return study

    return make


def test_enqueued_trials_run_first_with_exactly_their_params(client):
    runs = run_both(_with_enqueued(), patterns.mixed_space, client, n_trials=6)
    for trial, params in zip(runs.plain.trials, ENQUEUED, strict=False):
        assert {k: trial.params[k] for k in params} == params
    assert_same_trials(runs)


@pytest.mark.parametrize("sampler", ["random", "tpe-multivariate"])
def test_enqueued_trials_with_two_trials_at_a_time(client, sampler):
    samplers = {
        "random": RANDOM,
        "tpe-multivariate": functools.partial(
            optuna.samplers.TPESampler, seed=0, multivariate=True, n_startup_trials=2
        ),
    }
    dask = run_daskopt(_with_enqueued(samplers[sampler]), patterns.mixed_space, client, n_trials=6, n_concurrent=2)
    assert counts(dask) == {"COMPLETE": 6}
    for trial, params in zip(dask.trials, ENQUEUED, strict=False):
        assert trial.user_attrs["enqueued"] == trial.number
        assert {k: trial.params[k] for k in params} == params


# --------------------------------------------------------------------------------- learners
def test_scikit_learn_cross_val_score(client):
    make = study_factory(sampler=RANDOM, direction="maximize")
    runs = run_both(make, patterns.svc_digits, client, n_trials=4)
    assert_same_trials(runs, fields=("state", "values", "params"), rel=1e-9)
    assert runs.dask.best_value == pytest.approx(runs.plain.best_value)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_integration_pruning_callback(client, library):
    """optuna-integration's XGBoost / LightGBM pruning callback, unmodified."""
    objective = {"xgboost": patterns.xgboost_pruned, "lightgbm": patterns.lightgbm_pruned}[library]
    make = study_factory(sampler=RANDOM, pruner=lambda: MedianPruner(n_startup_trials=2, n_warmup_steps=2))
    runs = run_both(make, objective, client, n_trials=8)
    assert counts(runs.plain).get("PRUNED", 0) > 0, "the scenario must prune in Optuna"
    assert_same_trials(runs, fields=("state", "values", "params", "intermediate_values"), rel=1e-9)
    assert_same_failures(runs)


def test_lightgbm_callback_rejects_a_metric_against_the_study_direction(client):
    """The callback checks ``trial.study.direction`` against the metric: a maximized logloss fails
    every trial with the callback's ValueError, in both."""
    make = study_factory(sampler=RANDOM, direction="maximize")
    runs = run_both(make, patterns.lightgbm_pruned, client, n_trials=2)
    assert counts(runs.plain) == {"FAIL": 2}
    assert_same_trials(runs, fields=("state", "params"))
    assert_same_failures(runs)


def test_from_study_drop_in(client):
    """optuna-distributed's ``from_study(study, client).optimize(...)`` pattern: the same trials."""
    plain, _ = run_plain(study_factory(sampler=RANDOM), patterns.sphere, n_trials=6)
    study = study_factory(sampler=RANDOM)()
    daskopt.from_study(study, client).optimize(patterns.sphere, n_trials=6, n_concurrent=1, show_progress_bar=False)
    assert_same_trials(Runs(plain, study))
