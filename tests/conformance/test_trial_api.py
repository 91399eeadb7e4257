"""``optuna.Trial``'s behaviour, run through ``daskopt.optimize`` and through plain ``study.optimize``.

Every test runs one objective both ways on fresh studies built by the same factory and compares what the
two storages hold: states, values, params, distributions, intermediate values, user and system
attributes, and the exceptions of failed trials. daskopt runs one trial at a time (``n_concurrent=1``)
with seeded samplers, the order plain Optuna runs them in, so the storages must match exactly.

Plain Optuna re-raises an objective's exception unless ``catch`` names it, while daskopt's default
``catch`` is every ``Exception``: the plain side runs with ``catch=(Exception,)``. Differences that daskopt
makes on purpose are pinned by tests named ``..._intentional_difference``.
"""

from __future__ import annotations

import datetime
import functools

import optuna
import pytest

import daskopt
from tests.conformance import objectives
from tests.conformance.compare import (
    Runs,
    assert_same_failures,
    assert_same_trials,
    counts,
    run_both,
    run_daskopt,
    run_plain,
    study_factory,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

RANDOM = functools.partial(optuna.samplers.RandomSampler, seed=7)
# Trial.set_constraint and FrozenTrial.constraints came with Optuna 5
needs_constraints = pytest.mark.skipif(
    not hasattr(optuna.trial.Trial, "set_constraint"), reason="this Optuna has no trial constraints"
)
SAMPLERS = {
    "random": RANDOM,
    "tpe-multivariate": functools.partial(optuna.samplers.TPESampler, seed=3, n_startup_trials=2, multivariate=True),
    "tpe-independent": functools.partial(optuna.samplers.TPESampler, seed=3, n_startup_trials=2),
}


# ----------------------------------------------------------------------------------- suggest
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_suggest_variants_return_what_optuna_returns(client, sampler):
    runs = run_both(study_factory(sampler=SAMPLERS[sampler]), objectives.suggest_variants, client, n_trials=5)
    assert set(runs.plain.trials[0].user_attrs["types"].values()) >= {"float", "int", "str", "NoneType", "bool"}
    assert_same_trials(runs)
    assert_same_failures(runs)


@pytest.mark.parametrize("case", sorted(objectives.SUGGEST_ERRORS))
def test_suggest_errors_fail_the_trial_as_in_optuna(client, case):
    objective = functools.partial(objectives.suggest_error, case=case)
    runs = run_both(study_factory(sampler=RANDOM), objective, client, n_trials=2)
    assert set(counts(runs.plain)) == {"FAIL"}, "the case must be an error in Optuna"
    assert_same_trials(runs)
    assert_same_failures(runs)


# ------------------------------------------------------------------------------------ report
@pytest.mark.parametrize("case", sorted(objectives.REPORT_CASES))
def test_report_stores_what_optuna_stores(client, case):
    objective = functools.partial(objectives.report_case, case=case)
    runs = run_both(study_factory(sampler=RANDOM), objective, client, n_trials=1)
    assert_same_trials(runs)  # intermediate values, and the exception type of each report (user attr)


@pytest.mark.parametrize("case", ["negative_step", "none_step", "string_step", "string_value", "none_value"])
def test_report_errors_fail_the_trial_with_optunas_exception_type(client, case):
    objective = functools.partial(objectives.report_case, case=case, raise_errors=True)
    runs = run_both(study_factory(sampler=RANDOM), objective, client, n_trials=1)
    assert set(counts(runs.plain)) == {"FAIL"}
    assert_same_trials(runs)
    assert_same_failures(runs, messages=False)  # ValueError for a negative step, TypeError for the others


# ------------------------------------------------------------------------------ should_prune
PRUNERS = {
    "median": functools.partial(optuna.pruners.MedianPruner, n_startup_trials=1, n_warmup_steps=0),
    "threshold": functools.partial(optuna.pruners.ThresholdPruner, upper=0.6),
    "successive-halving": functools.partial(optuna.pruners.SuccessiveHalvingPruner, min_resource=1),
    "nop": optuna.pruners.NopPruner,
}


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
def test_should_prune_answers_as_optuna_does(client, pruner):
    """Every answer, the one before any report included, and what the pruner wrote (rungs)."""
    runs = run_both(
        study_factory(sampler=RANDOM, pruner=PRUNERS[pruner]), objectives.learning_curve, client, n_trials=6
    )
    assert_same_trials(runs)


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
def test_raising_trial_pruned_records_pruned_with_the_last_reported_value(client, pruner):
    runs = run_both(study_factory(sampler=RANDOM, pruner=PRUNERS[pruner]), objectives.prunes_itself, client, n_trials=8)
    assert_same_trials(runs)


def test_trial_pruned_without_reports(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.raises_pruned_without_reports, client, n_trials=2)
    assert counts(runs.plain) == {"PRUNED": 2}
    assert_same_trials(runs)


def test_pruned_with_nan_as_last_report_has_no_value(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.pruned_after_nan, client, n_trials=1)
    assert runs.plain.trials[0].values is None
    assert_same_trials(runs)


class Recorder:
    """A study callback that keeps what it was given: (number, state, values, params)."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.seen.append((trial.number, trial.state.name, trial.values, trial.params, len(study.trials)))


def test_callbacks_get_each_finished_trial_as_in_optuna(client):
    plain_recorder, dask_recorder = Recorder(), Recorder()
    plain, failures = run_plain(study_factory(sampler=RANDOM), objectives.mixed_outcomes, n_trials=6,
                                callbacks=lambda: [plain_recorder])  # fmt: skip
    dask = run_daskopt(study_factory(sampler=RANDOM), objectives.mixed_outcomes, client, n_trials=6,
                       callbacks=lambda: [dask_recorder])  # fmt: skip
    assert [s for _, s, *_ in plain_recorder.seen] == ["COMPLETE", "FAIL", "PRUNED"] * 2
    assert dask_recorder.seen == plain_recorder.seen
    assert_same_failures(Runs(plain, dask, failures))


class RaisesOnItsSecondCall:
    """A callback that raises on the second trial it sees."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.calls += 1
        if self.calls == 2:
            raise ValueError(f"the callback gave up after trial {trial.number}")


def test_a_callback_that_raises_stops_the_call_with_its_error_as_in_optuna(client):
    plain = study_factory(sampler=RANDOM)()
    with pytest.raises(ValueError, match="^the callback gave up after trial 1$"):
        plain.optimize(objectives.learning_curve, n_trials=6, callbacks=[RaisesOnItsSecondCall()])
    dask = study_factory(sampler=RANDOM)()
    with pytest.raises(ValueError, match="^the callback gave up after trial 1$"):  # the callback's own exception
        daskopt.optimize(dask, objectives.learning_curve, n_trials=6, client=client, n_concurrent=1,
                         callbacks=[RaisesOnItsSecondCall()], show_progress_bar=False)  # fmt: skip
    assert counts(plain) == counts(dask) == {"COMPLETE": 2}  # the trial it saw stays as it was told
    assert_same_trials(Runs(plain, dask))


def test_should_prune_after_steps_reported_out_of_order(client):
    """Optuna decides on every value reported so far: a better value at an earlier step, reported last,
    turns the decision (answers [True, False] in Optuna)."""
    make = study_factory(sampler=RANDOM, pruner=PRUNERS["median"])
    runs = run_both(make, objectives.out_of_order_prune, client, n_trials=3)
    assert runs.plain.trials[1].user_attrs["answers"] == [True, False]
    assert_same_trials(runs)


class CallLog(optuna.pruners.BasePruner):
    """Wraps a pruner and records each call: (trial number, its last step)."""

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner
        self.calls: list[tuple[int, int | None]] = []

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        self.calls.append((trial.number, trial.last_step))
        return self.inner.prune(study, trial)


@pytest.mark.parametrize("checks", ["never", "last", "every"])
def test_the_pruner_runs_only_when_the_objective_asks(client, checks):
    """Optuna calls the pruner inside ``should_prune`` only; an objective that never asks is never judged."""
    objective = functools.partial(objectives.reports_slowly, checks=checks)
    plain_pruner = CallLog(optuna.pruners.MedianPruner(n_startup_trials=1))
    plain, _ = run_plain(study_factory(sampler=RANDOM, pruner=plain_pruner), objective, n_trials=3)
    dask_pruner = CallLog(optuna.pruners.MedianPruner(n_startup_trials=1))
    dask = run_daskopt(study_factory(sampler=RANDOM, pruner=dask_pruner), objective, client, n_trials=3)
    assert dask_pruner.calls == plain_pruner.calls
    assert [t.user_attrs["answers"] for t in dask.trials] == [t.user_attrs["answers"] for t in plain.trials]


@pytest.mark.parametrize("checks", ["never", "last"])
def test_successive_halving_writes_rungs_only_when_asked(client, checks):
    """SuccessiveHalvingPruner writes ``completed_rung_*`` system attributes as it decides: they appear
    only where Optuna's ``should_prune`` ran."""
    objective = functools.partial(objectives.reports_slowly, checks=checks)
    make = study_factory(
        sampler=RANDOM, pruner=functools.partial(optuna.pruners.SuccessiveHalvingPruner, min_resource=1)
    )
    runs = run_both(make, objective, client, n_trials=4)
    assert_same_trials(runs)


# ------------------------------------------------------------------------------- attributes
def test_user_attrs_set_and_read_inside_the_trial(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.user_attrs, client, n_trials=2)
    assert runs.plain.trials[0].user_attrs["overwritten"] == "second"
    assert_same_trials(runs)


def test_enqueued_user_attrs_are_visible_inside_the_trial(client):
    def make() -> optuna.Study:
        study = study_factory(sampler=RANDOM)()
        study.enqueue_trial({"x": 0.5}, user_attrs={"origin": "enqueued", "batch": 3})
        return study

    runs = run_both(make, objectives.user_attrs, client, n_trials=2)
    assert runs.plain.trials[0].user_attrs["seen_at_start"] == {"origin": "enqueued", "batch": 3}
    assert_same_trials(runs)


def test_number_datetime_start_and_trial_type(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.trial_properties, client, n_trials=3)
    for study in (runs.plain, runs.dask):
        for trial in study.trials:
            seen = trial.user_attrs
            assert seen["number"] == trial.number
            assert datetime.datetime.fromisoformat(seen["datetime_start"]) == trial.datetime_start
    ignore = {"datetime_start"}  # the instants differ; each equals its own storage's (checked above)
    assert_same_trials(runs, ignore_user_attrs=ignore)


# ------------------------------------------------------------------------------ constraints
@needs_constraints
def test_set_constraint_stores_under_optunas_constraint_keys(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.set_constraints, client, n_trials=3)
    trial = runs.plain.trials[0]
    assert set(trial.system_attrs) == {"constraints:c0", "constraints:c1"}
    assert_same_trials(runs)
    assert [t.constraints for t in runs.dask.trials] == [t.constraints for t in runs.plain.trials]


CONSTRAINED_SAMPLERS = {
    "tpe": lambda: optuna.samplers.TPESampler(
        seed=0, n_startup_trials=2, constraints_func=objectives.constraints_from_user_attrs
    ),
    "nsga2": lambda: optuna.samplers.NSGAIISampler(
        seed=0, population_size=2, constraints_func=objectives.constraints_from_user_attrs
    ),
}


@needs_constraints
@pytest.mark.parametrize("sampler", sorted(CONSTRAINED_SAMPLERS))
def test_constraints_func_values_stored_under_the_constraints_key(client, sampler):
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    runs = run_both(study_factory(sampler=CONSTRAINED_SAMPLERS[sampler]), objectives.constrained, client, n_trials=4)
    assert all(_CONSTRAINTS_KEY in t.system_attrs for t in runs.plain.trials)
    assert_same_trials(runs)
    assert [t.constraints for t in runs.dask.trials] == [t.constraints for t in runs.plain.trials]


# -------------------------------------------------------------------------- multi-objective
@pytest.mark.parametrize("returns", ["tuple", "list", "array", "three", "one", "nan"])
def test_multi_objective_returns_and_report_raises_not_implemented(client, returns):
    objective = functools.partial(objectives.multi_objective, returns=returns)
    make = study_factory(sampler=RANDOM, directions=["minimize", "maximize"])
    runs = run_both(make, objective, client, n_trials=2)
    assert runs.plain.trials[0].user_attrs["errors"] == ["NotImplementedError", "NotImplementedError"]
    assert_same_trials(runs)


def test_multi_objective_report_fails_the_trial_with_not_implemented(client):
    make = study_factory(sampler=RANDOM, directions=["minimize", "minimize"])
    runs = run_both(make, objectives.multi_objective_reports, client, n_trials=2)
    assert_same_trials(runs)
    assert_same_failures(runs)


# ---------------------------------------------------------------------------------- returns
@pytest.mark.parametrize(
    "kind",
    ["float", "int", "float32", "numpy_int", "zero_d_array", "list_of_one", "tuple_of_one", "none", "string",
     "nan", "two_values", "dict"],
)  # fmt: skip
def test_return_values_as_optuna_takes_them(client, kind):
    objective = functools.partial(objectives.returns, kind=kind)
    runs = run_both(study_factory(sampler=RANDOM), objective, client, n_trials=1)
    assert_same_trials(runs)


@pytest.mark.parametrize("kind", ["inf", "minus_inf", "true"])
def test_infinite_or_bool_returns_fail_intentional_difference(client, kind):
    """Optuna completes a trial that returns ``inf`` or ``True`` (a float-castable value that is not NaN);
    daskopt fails it with a reason (README: "it returns NaN, inf, a string ... FAIL")."""
    objective = functools.partial(objectives.returns, kind=kind)
    runs = run_both(study_factory(sampler=RANDOM), objective, client, n_trials=1)
    assert counts(runs.plain) == {"COMPLETE": 1}
    assert counts(runs.dask) == {"FAIL": 1}
    assert "returned" in runs.dask.trials[0].user_attrs["fail_reason"]


# ------------------------------------------------------------------------------- exceptions
def test_caught_exceptions_fail_the_trial_and_the_study_goes_on(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.raises_on_odd, client, n_trials=4)
    assert counts(runs.plain) == {"COMPLETE": 2, "FAIL": 2}
    assert_same_trials(runs)
    assert_same_failures(runs)


def test_default_catch_takes_every_exception_intentional_difference(client):
    """Plain ``study.optimize`` re-raises the objective's exception (its default ``catch`` is empty);
    daskopt's default ``catch`` is every ``Exception``: FAIL with ``fail_reason``, and the study goes on."""
    plain = study_factory(sampler=RANDOM)()
    with pytest.raises(ValueError, match="odd trial 1"):
        plain.optimize(objectives.raises_on_odd, n_trials=4)
    dask = run_daskopt(study_factory(sampler=RANDOM), objectives.raises_on_odd, client, n_trials=4)
    assert counts(dask) == {"COMPLETE": 2, "FAIL": 2}
    assert dask.trials[1].user_attrs["fail_reason"] == "ValueError: odd trial 1"
    assert "Traceback" in dask.trials[1].user_attrs["traceback"]


def test_uncaught_exception_stops_the_study_intentional_difference(client):
    """Both stop at the first exception ``catch`` does not name and keep the same trials; Optuna re-raises
    the exception itself, daskopt raises ``ObjectiveError`` (the exception happened on a worker) naming it."""
    plain = study_factory(sampler=RANDOM)()
    with pytest.raises(KeyError):
        plain.optimize(objectives.raises_per_number, n_trials=5, catch=(ValueError,))
    dask = study_factory(sampler=RANDOM)()
    with pytest.raises(daskopt.ObjectiveError) as info:
        daskopt.optimize(
            dask, objectives.raises_per_number, n_trials=5, client=client, n_concurrent=1,
            catch=(ValueError,), show_progress_bar=False,
        )  # fmt: skip
    assert info.value.type_name == "builtins.KeyError"
    assert info.value.trial_number == 2
    assert [t.state.name for t in dask.trials] == [t.state.name for t in plain.trials] == ["COMPLETE", "FAIL", "FAIL"]


def test_catch_nothing_raises_object_error_intentional_difference(client):
    dask = study_factory(sampler=RANDOM)()
    with pytest.raises(daskopt.ObjectiveError, match="odd trial 1"):
        daskopt.optimize(dask, objectives.raises_on_odd, n_trials=4, client=client, n_concurrent=1, catch=(),
                         show_progress_bar=False)  # fmt: skip
    assert [t.state.name for t in dask.trials] == ["COMPLETE", "FAIL"]


def test_fail_fast_stops_a_study_that_only_fails_intentional_difference(client):
    """Optuna runs all ``n_trials`` of an objective that fails every time; daskopt's ``fail_fast``
    (default 5) stops after the first five identical failures with ``ObjectiveError``."""
    plain, _ = run_plain(study_factory(sampler=RANDOM), objectives.always_fails, n_trials=8)
    assert counts(plain) == {"FAIL": 8}
    dask = study_factory(sampler=RANDOM)()
    with pytest.raises(daskopt.ObjectiveError, match="always fails"):
        daskopt.optimize(dask, objectives.always_fails, n_trials=8, client=client, n_concurrent=1,
                         show_progress_bar=False)  # fmt: skip
    assert counts(dask) == {"FAIL": 5}
    dask = run_daskopt(
        study_factory(sampler=RANDOM), objectives.always_fails, client, n_trials=8, failures={"fail_fast": None}
    )
    assert counts(dask) == {"FAIL": 8}  # fail_fast=None: as Optuna


# ------------------------------------------------------------------------------ trial.study
@pytest.mark.parametrize("directions", [["minimize"], ["maximize"], ["minimize", "maximize"]])
def test_trial_study_is_readable_inside_the_trial(client, directions):
    def make() -> optuna.Study:
        study = study_factory(sampler=RANDOM, directions=directions)()
        study.set_user_attr("dataset", "digits")
        study.set_user_attr("folds", [1, 2, 3])
        return study

    runs = run_both(make, objectives.reads_study, client, n_trials=2)
    assert runs.plain.trials[0].user_attrs["seen"]["study_name"] == "conformance"
    assert_same_trials(runs)


def test_trial_study_exposes_the_attributes_optuna_has(client):
    """A trial sees the study attributes the installed Optuna's ``Study`` has (``system_attrs`` only before
    Optuna 5)."""
    runs = run_both(study_factory(sampler=RANDOM), objectives.study_attributes, client, n_trials=1)
    assert runs.plain.trials[0].user_attrs["has"]["system_attrs"] is hasattr(optuna.Study, "system_attrs")
    assert_same_trials(runs)


def test_trial_study_user_attrs_are_those_of_the_call_start_intentional_difference(client):
    """In Optuna ``trial.study.user_attrs`` reads the storage, so a trial sees what a callback wrote after
    the previous trial. daskopt's ``trial.study`` holds the study's attributes as they were when the call
    started (read once, shipped with the trials)."""
    callbacks = lambda: [objectives.note_progress]  # noqa: E731
    runs = run_both(study_factory(sampler=RANDOM), objectives.reads_study_progress, client, n_trials=3,
                    callbacks=callbacks)  # fmt: skip
    assert [t.user_attrs["seen_progress"] for t in runs.plain.trials] == [None, 0, 1]
    assert [t.user_attrs["seen_progress"] for t in runs.dask.trials] == [None, None, None]


@pytest.mark.parametrize("what", sorted(objectives.STUDY_STORAGE_READS))
def test_trial_study_storage_access_raises_a_clear_error_intentional_difference(client, what):
    """In Optuna ``trial.study`` is the study itself. In daskopt the study lives in the client's loop:
    ``trial.study`` answers name, direction(s) and attributes, and anything that needs the storage fails
    the trial with an error naming what was asked for."""
    objective = functools.partial(objectives.uses_study_storage, what=what)
    runs = run_both(study_factory(sampler=RANDOM), objective, client, n_trials=2)
    assert counts(runs.plain) == {"COMPLETE": 2}
    assert [t.state.name for t in runs.dask.trials] == ["COMPLETE", "FAIL"]
    assert what in runs.dask.trials[1].user_attrs["fail_reason"]


# ---------------------------------------------------------------------------- trial.storage
def test_report_cross_validation_scores_through_trial_storage(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.cross_validation_scores, client, n_trials=3)
    assert "terminator:cv_scores" in runs.plain.trials[0].system_attrs
    assert_same_trials(runs)


def test_the_trials_own_attributes_written_through_trial_storage(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.storage_writes, client, n_trials=2)
    assert runs.plain.trials[0].system_attrs["system_via_storage"] == [1, 2]
    assert_same_trials(runs)


def test_report_cross_validation_scores_rejects_a_single_score(client):
    runs = run_both(study_factory(sampler=RANDOM), objectives.too_few_cross_validation_scores, client, n_trials=1)
    assert counts(runs.plain) == {"FAIL": 1}
    assert_same_trials(runs)
    assert_same_failures(runs)
