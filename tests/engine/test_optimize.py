"""The engine on a real 2-process LocalCluster: unmodified Optuna objectives, spaces, counts, repeats."""

from __future__ import annotations

import functools
import inspect
import logging

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

import daskopt
from daskopt.engine.define_by_run import DefineByRun
from tests import trial_objectives as objectives
from tests.conftest import states

PRUNERS = {
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3),
    "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
}
SPACE = {
    "x": FloatDistribution(-10, 10),
    "y": IntDistribution(0, 10),
    "c": CategoricalDistribution(["a", "b", "c"]),
}


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
def test_unmodified_optuna_objective_prunes_centrally(client, pruner):
    study = optuna.create_study(pruner=PRUNERS[pruner](), sampler=optuna.samplers.RandomSampler(seed=0))
    daskopt.optimize(study, objectives.quadratic, n_trials=40, client=client)
    counts = states(study)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 40
    assert counts.get("PRUNED", 0) > 0
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert all(t.intermediate_values for t in pruned)  # pruned from a reported value


def test_multi_objective_study(client):
    study = optuna.create_study(directions=["minimize", "maximize"])
    daskopt.optimize(study, objectives.two_objectives, n_trials=12, client=client)
    assert states(study) == {"COMPLETE": 12}
    assert all(len(t.values) == 2 for t in study.trials)
    assert study.best_trials


class CountingSampler(optuna.samplers.TPESampler):
    """TPE (multivariate) that counts how often the joint sampling step runs."""

    def __init__(self) -> None:
        super().__init__(multivariate=True, n_startup_trials=3, seed=1)
        self.relative_calls = 0
        self.relative_outside_ask = 0

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        self.relative_calls += 1
        # the engine samples jointly while asking (off the critical path), not at the first suggest
        self.relative_outside_ask += not any(frame.function == "_ask" for frame in inspect.stack(0))
        return super().sample_relative(study, trial, search_space)


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "define-by-run"])
def test_joint_sampling_runs_once_per_trial(client, declared):
    sampler = CountingSampler()
    study = optuna.create_study(sampler=sampler)
    daskopt.optimize(study, objectives.quadratic, n_trials=15, client=client, search_space=SPACE if declared else None)
    assert states(study).get("RUNNING", 0) == 0
    assert len(study.trials) == 15
    assert sampler.relative_calls == 15
    assert sampler.relative_outside_ask == 0
    assert all(set(t.params) == {"x", "y", "c"} for t in study.trials)


@pytest.mark.parametrize("multivariate", [True, False], ids=["joint", "independent"])
def test_define_by_run_takes_the_joint_sample_without_asking_and_records_what_it_used(
    client, monkeypatch, multivariate
):
    asked: list[tuple[int, str]] = []
    answer = DefineByRun.answer

    def counting(self, run, request, name, distribution_json):  # type: ignore[no-untyped-def]
        asked.append((run.number, name))
        return answer(self, run, request, name, distribution_json)

    monkeypatch.setattr(DefineByRun, "answer", counting)
    sampler = optuna.samplers.TPESampler(multivariate=multivariate, n_startup_trials=3, seed=3)
    study = optuna.create_study(sampler=sampler)
    daskopt.optimize(study, objectives.records_what_it_saw, n_trials=14, n_concurrent=1, client=client)

    assert states(study) == {"COMPLETE": 14}
    for trial in study.trials:  # the study holds exactly what the objective used, with its distributions
        assert trial.params == trial.user_attrs["seen"]
        assert trial.distributions["x"].high == (10.0 if trial.number < 8 else 20.0)
    if not multivariate:  # no joint sample: every suggest asks the loop
        assert len(asked) == sum(len(t.params) for t in study.trials)
        return
    names = {number: {name for n, name in asked if n == number} for number in range(14)}
    # past the random start-up, x, n and kind travel with the assignment; the conditional w (not in the
    # joint space) still asks, and so does x once its range changed (no longer in the intersection space)
    for number in range(4, 8):
        assert names[number] <= {"w"}
    for number in range(10, 14):
        assert "x" in names[number] and names[number] <= {"x", "w"}


def test_declared_space_values_reach_the_objective(client):
    study = optuna.create_study()
    daskopt.optimize(
        study, objectives.sleeps_then_returns, n_trials=6, client=client, search_space={"x": FloatDistribution(0, 1)}
    )
    for trial in study.trials:
        assert trial.value == pytest.approx(trial.params["x"])


def test_enqueued_points_repeat_with_seeds_and_no_pruning(client):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # prunes every report
    study.enqueue_trial({"x": 0.25})
    study.enqueue_trial({"x": 0.75})
    daskopt.optimize(study, objectives.seed_echo, n_trials=6, client=client, trials={"repeats": 3, "seed_base": 42})
    assert states(study) == {"COMPLETE": 6}
    by_x: dict[float, list[int]] = {}
    for trial in study.trials:
        by_x.setdefault(trial.params["x"], []).append(int(trial.value))
        assert trial.user_attrs["seed"] == 42 + trial.user_attrs["repeat"]
    assert {x: sorted(seeds) for x, seeds in by_x.items()} == {0.25: [42, 43, 44], 0.75: [42, 43, 44]}


def test_report_last_n_averages_the_last_reports(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.reports_only, n_trials=3, client=client, trials={"report_last_n": 2})
    assert [t.value for t in study.trials] == [4.5, 4.5, 4.5]


def test_user_attrs_and_constraints_reach_the_study(client):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.user_attrs, n_trials=4, client=client)
    for trial in study.trials:
        assert trial.user_attrs["tag"]["list"] == [1, 2]
        assert trial.system_attrs["constraints:c0"] == pytest.approx(trial.params["x"] - 0.5)


@pytest.mark.parametrize("n_trials", [1, 7, 23])
def test_n_trials_is_exact(client, n_trials):
    study = optuna.create_study()
    daskopt.optimize(study, objectives.sleeps_then_returns, n_trials=n_trials, client=client)
    assert states(study) == {"COMPLETE": n_trials}


def test_n_concurrent_bounds_trials_in_flight(client):
    study = optuna.create_study()
    seen: list[int] = []

    def running(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        seen.append(len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))))

    daskopt.optimize(
        study, objectives.sleeps_then_returns, n_trials=8, client=client, n_concurrent=1, callbacks=[running]
    )
    assert max(seen) <= 1
    assert states(study) == {"COMPLETE": 8}


def test_trials_long_against_an_ask_are_not_asked_ahead(client):
    """A trial is RUNNING in the study only once it runs: with trials far longer than an ask, none waits
    asked ahead for a slot (so its start time is its own)."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    running_at_tell: list[int] = []

    def running(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        running_at_tell.append(len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))))

    long = functools.partial(objectives.sleeps_for, seconds=2.0)  # thousands of asks long
    daskopt.optimize(study, long, n_trials=3, client=client, n_concurrent=1, callbacks=[running])
    assert running_at_tell == [0] * 3  # the one slot's trial was just told; nothing else was asked yet


def test_study_stop_in_a_callback_ends_the_call(client):
    study = optuna.create_study()

    def stop_at_three(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= 3:
            study.stop()

    daskopt.optimize(study, objectives.sleeps_then_returns, n_trials=50, client=client, callbacks=[stop_at_three])
    assert 3 <= len(study.trials) < 50
    assert states(study).get("RUNNING", 0) == 0


def test_from_study_is_a_drop_in(client):
    study = optuna.create_study()
    distributed = daskopt.from_study(study, client)
    distributed.optimize(objectives.sleeps_then_returns, n_trials=5)
    assert distributed.into_study() is study
    assert len(distributed.trials) == 5


def test_default_client_is_used(client):
    study = optuna.create_study()
    with client.as_current():
        daskopt.optimize(study, objectives.reports_in_task, n_trials=3, trials={"report_last_n": 1})
    assert states(study) == {"COMPLETE": 3}
    assert {t.user_attrs["scheduler"] for t in study.trials} == {client.scheduler.address}  # not a private cluster


def test_grid_sampler_exhaustion_stops_the_study(client):
    grid = optuna.samplers.GridSampler({"x": [0.1, 0.2, 0.3]})
    study = optuna.create_study(sampler=grid)
    daskopt.optimize(study, objectives.sleeps_then_returns, n_trials=20, client=client)
    # concurrent trials may repeat a grid point (as with Optuna's n_jobs); every point is covered
    assert {t.params["x"] for t in study.trials if t.state.name == "COMPLETE"} == {0.1, 0.2, 0.3}
    assert len(study.trials) < 20


def test_short_trials_chain_on_one_task_without_losing_any(client):
    # reports_only never calls should_prune, so every chained task holds an unread decision when it asks
    # for its next trial: the task must skip it, not mistake it for the loop's answer
    study = optuna.create_study()
    daskopt.optimize(study, objectives.reports_in_task, n_trials=30, client=client, trials={"report_last_n": 1})
    assert states(study) == {"COMPLETE": 30}
    tasks = {t.user_attrs["task"] for t in study.trials}
    assert len(tasks) < 30 / 2  # trials of a few ms each: most ran on a task that had run one before


def test_chaining_can_be_turned_off(client):
    study = optuna.create_study()
    daskopt.optimize(
        study, objectives.reports_in_task, n_trials=6, client=client, trials={"report_last_n": 1, "chain_below_s": 0}
    )
    assert states(study) == {"COMPLETE": 6}
    assert len({t.user_attrs["task"] for t in study.trials}) == 6  # one Dask task per trial


class CountingService:
    """A user's own service beside the loop: reads the engine view when the call ends."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.started_with = engine.counts.finished
        self.closed_with: int | None = None

    async def close(self) -> None:
        self.closed_with = self.engine.counts.finished


def test_services_start_with_the_call_and_close_at_its_end(client):
    started: list[CountingService] = []

    def start(engine) -> CountingService:
        started.append(CountingService(engine))
        return started[-1]

    study = optuna.create_study()
    daskopt.optimize(study, objectives.quadratic, n_trials=5, client=client, services=[start])
    assert len(started) == 1
    service = started[0]
    assert service.engine.study is study and len(service.engine.timeline) == 5
    assert (service.started_with, service.closed_with) == (0, 5)


def test_a_declared_range_narrower_than_the_objectives_warns_once_naming_both(client, caplog):
    """The declared range is what is searched (its values lie inside the objective's, so trials run), and
    the driver says so once per call, with both ranges, instead of silently."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with caplog.at_level(logging.WARNING, logger="daskopt"):
        daskopt.optimize(
            study,
            objectives.sleeps_then_returns,  # suggest_float("x", 0, 1)
            n_trials=6,
            client=client,
            search_space={"x": FloatDistribution(0.25, 0.5)},
            show_progress_bar=False,
        )
    warnings = [r.getMessage() for r in caplog.records if "declared search space" in r.getMessage()]
    assert len(warnings) == 1
    assert "FloatDistribution(high=0.5, log=False, low=0.25, step=None)" in warnings[0]
    assert "FloatDistribution(high=1.0, log=False, low=0.0, step=None)" in warnings[0]
    assert all(0.25 <= t.params["x"] <= 0.5 for t in study.trials) and states(study) == {"COMPLETE": 6}
