"""The pruner's cached view of finished trials: same answers as Optuna's own path, fresh for our tells."""

from __future__ import annotations

import math

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from daskopt.engine.pruning import FinishedTrials, PercentileRule, PruneDecider, StepValues

PRUNERS = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    "percentile": lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=3),
    "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
    "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=12, reduction_factor=2),
    "wilcoxon": lambda: optuna.pruners.WilcoxonPruner(p_threshold=0.2),
    "patient": lambda: optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(n_startup_trials=3), patience=1),
    "threshold": lambda: optuna.pruners.ThresholdPruner(upper=5.0),
}
STEPS = 12


def curve(number: int, step: int) -> float:
    """Deterministic, crossing learning curves (some trials improve late, some plateau)."""
    return 10.0 / (1 + step) + (number % 7) * 0.4 + 0.3 * math.sin(number + step)


def populated_study(pruner: optuna.pruners.BasePruner, storage: str | None = None) -> optuna.Study:
    """24 finished trials (complete, pruned, failed) with reported curves, as a past run leaves them."""
    # one name for every copy: Hyperband picks a trial's bracket from a hash of study name and number
    study = optuna.create_study(pruner=pruner, storage=storage, study_name="populated")
    for number in range(24):
        trial = study.ask()
        for step in range(STEPS if number % 5 else 4):
            trial.report(curve(number, step), step)
        if number % 9 == 8:
            study.tell(trial, state=TrialState.FAIL)
        elif number % 5 == 0:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, curve(number, STEPS - 1))
    return study


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_decisions_match_optunas_own_should_prune(name):
    ours, theirs = populated_study(PRUNERS[name]()), populated_study(PRUNERS[name]())
    decider = PruneDecider(ours)
    for offset in range(3):  # three running trials, each from a fresh ask on both studies
        mine, reference = ours.ask(), theirs.ask()
        decisions, expected = [], []
        for step in range(STEPS):
            value = curve(30 + 5 * offset, step)
            mine.report(value, step)
            reference.report(value, step)
            decisions.append(decider.should_prune(mine))
            expected.append(reference.should_prune())
        assert decisions == expected
        frozen = ours.tell(mine, curve(30, STEPS - 1))
        theirs.tell(reference, curve(30, STEPS - 1))
        decider.finished.add(frozen)


@pytest.mark.parametrize(
    "states",
    [(TrialState.COMPLETE,), (TrialState.PRUNED,), (TrialState.FAIL,), (TrialState.COMPLETE, TrialState.PRUNED)],
    ids=["complete", "pruned", "fail", "complete+pruned"],
)
def test_finished_lists_equal_the_storages_in_number_order(states):
    study = populated_study(optuna.pruners.NopPruner())
    finished = FinishedTrials(study)
    assert [t.number for t in finished.get(states)] == [
        t.number for t in study.get_trials(deepcopy=False, states=states)
    ]


def test_own_tells_show_at_once_and_others_after_the_refresh(tmp_path):
    study = populated_study(optuna.pruners.NopPruner(), storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    finished = FinishedTrials(study, refresh_s=3600)
    before = len(finished.get([TrialState.COMPLETE]))

    trial = study.ask()
    finished.add(study.tell(trial, 1.0))  # told by this engine: in the next answer, no re-read
    assert len(finished.get([TrialState.COMPLETE])) == before + 1

    other = optuna.load_study(study_name=study.study_name, storage=study._storage)
    other.tell(other.ask(), 2.0)  # another process's result: not until the refresh
    assert len(finished.get([TrialState.COMPLETE])) == before + 1
    assert len(FinishedTrials(study, refresh_s=0).get([TrialState.COMPLETE])) == before + 2


def test_answers_are_copies_and_duplicates_are_ignored():
    study = populated_study(optuna.pruners.NopPruner())
    finished = FinishedTrials(study)
    first = finished.get([TrialState.COMPLETE])
    first.clear()
    finished.add(study.trials[1])  # already known
    assert len(finished.get([TrialState.COMPLETE])) == len(study.get_trials(states=(TrialState.COMPLETE,)))


def awkward_reports(number: int) -> list[tuple[int, float]]:
    """Reports as objectives send them: NaN and inf values, steps out of order, gaps, repeated steps."""
    reports = [(step, curve(number, step)) for step in range(0, 30, 1 + number % 3)]
    reports[3] = (reports[3][0], math.nan)
    reports[5] = (reports[5][0], math.inf if number % 2 else -math.inf)
    reports.insert(7, reports[2])  # a repeated step: Optuna keeps the first value
    reports[9], reports[10] = reports[10], reports[9]  # out of order
    if number % 4 == 0:
        reports = [(step, math.nan) for step, _ in reports]  # every value NaN
    return reports


@pytest.mark.filterwarnings("ignore:The reported value is ignored")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on all-NaN and inf reports, in both paths
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize(
    "pruner",
    [
        lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3, interval_steps=4),
        lambda: optuna.pruners.PercentilePruner(70.0, n_startup_trials=1, n_min_trials=2),
        lambda: optuna.pruners.MedianPruner(n_startup_trials=0),
    ],
    ids=["median-interval", "percentile-70", "median-plain"],
)
def test_percentile_pruners_decide_on_three_steps_as_on_all(direction, pruner):
    """The summarized trial (last, second-last, best step) gives Optuna's own decision at every report."""
    studies = [optuna.create_study(direction=direction, pruner=pruner(), study_name="s") for _ in range(2)]
    ours, theirs = studies
    decider = PruneDecider(ours)
    decisions, expected = [], []
    for number in range(12):
        mine, reference = ours.ask(), theirs.ask()
        for step, value in awkward_reports(number):
            mine.report(value, step)
            reference.report(value, step)
            decisions.append(decider.should_prune(mine))
            expected.append(reference.should_prune())
        assert mine._cached_frozen_trial.intermediate_values == reference._cached_frozen_trial.intermediate_values
        decider.finished.add(ours.tell(mine, 1.0))
        decider.forget(mine.number)
        theirs.tell(reference, 1.0)
    assert decisions == expected
    assert True in expected and False in expected


@pytest.mark.parametrize("pruner", ["median", "percentile"])
def test_cached_thresholds_follow_trials_finishing_between_decisions(pruner):
    """The percentile threshold of a step is cached between changes of the finished trials: a trial that
    completes between two decisions at the same steps must change the answer exactly as in Optuna."""
    ours, theirs = populated_study(PRUNERS[pruner]()), populated_study(PRUNERS[pruner]())
    decider = PruneDecider(ours)
    running = [(ours.ask(), theirs.ask()) for _ in range(3)]
    for step in range(STEPS):
        for offset, (mine, reference) in enumerate(running):
            value = curve(40 + offset, step) - 0.3 * offset
            mine.report(value, step)
            reference.report(value, step)
            assert decider.should_prune(mine) == reference.should_prune(), (step, offset)
        for study in (ours, theirs):  # a low curve completes: thresholds at every step move down
            finisher = study.ask()
            for s in range(STEPS):
                finisher.report(curve(step, s) - 2.0, s)
            study.tell(finisher, curve(step, STEPS - 1) - 2.0)
        decider.finished.add(ours.trials[-1])


def test_the_threshold_cache_is_off_outside_the_engines_decisions():
    """Optuna's own callers of the routed function (plain Optuna in the same process) always compute."""
    from optuna.pruners import _percentile

    ours = populated_study(PRUNERS["median"]())
    PruneDecider(ours).should_prune(ours.ask())  # installs the routing and uses it once
    completed = ours.get_trials(states=(TrialState.COMPLETE,))
    threshold = _percentile._get_percentile_intermediate_result_over_trials
    for chunk in (completed[:5], completed[5:10]):  # same length, other trials: a leaked cache would repeat
        assert threshold(chunk, ours.direction, 3, 50.0, 1) == sorted(t.intermediate_values[3] for t in chunk)[2]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on all-NaN slices and inf - inf
@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.0, 1.0, 2.5])),
        min_size=1,
        max_size=40,
    ),
    percentile=st.one_of(st.floats(0, 100), st.sampled_from([0.0, 25.0, 50.0, 75.0, 100.0])),
    n_min_trials=st.integers(1, 5),
    direction=st.sampled_from(list(optuna.study.StudyDirection)[1:]),
)
def test_step_values_give_optunas_percentile_bit_for_bit(values, percentile, n_min_trials, direction):
    """The sorted per-step values answer as Optuna's walk over the completed trials with NumPy does."""
    from optuna.pruners._percentile import _get_percentile_intermediate_result_over_trials as original

    completed = [
        optuna.trial.create_trial(value=0.0, intermediate_values={3: v, 4: 1.0}, state=TrialState.COMPLETE)
        for v in values
    ]
    steps = StepValues()
    for trial in completed:
        steps.add(trial.intermediate_values)
    q = 100 - percentile if direction == optuna.study.StudyDirection.MAXIMIZE else percentile
    expected = original(completed, direction, 3, percentile, n_min_trials)
    got = steps.percentile(3, q, n_min_trials)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected
    assert math.isnan(steps.percentile(5, q, 1))  # a step nobody reported


def test_only_optunas_own_percentile_pruners_are_decided_by_the_engine():
    """A subclass may decide otherwise, so it keeps Optuna's path; a multi-objective study (whose trials
    cannot report) still gets a decider with the default MedianPruner."""

    class Stricter(optuna.pruners.MedianPruner):
        def prune(self, study, trial):
            return True

    assert PercentileRule.of(optuna.pruners.MedianPruner(n_warmup_steps=2)) == PercentileRule(50.0, 5, 2, 1, 1)
    assert PercentileRule.of(Stricter()) is None
    study = optuna.create_study(pruner=Stricter())
    trial = study.ask()
    trial.report(1.0, 0)
    assert PruneDecider(study).should_prune(trial) is True  # the subclass's own answer
    PruneDecider(optuna.create_study(directions=["minimize", "maximize"]))
