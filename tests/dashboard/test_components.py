"""Each component's data source holds what the study holds, and later updates send deltas only."""

from __future__ import annotations

import optuna
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsPatchedEvent, ColumnsStreamedEvent, ModelChangedEvent

from daskopt.dashboard import base
from daskopt.dashboard.curves import Curves
from daskopt.dashboard.history import History, ParetoHistory
from daskopt.dashboard.page import Page
from daskopt.dashboard.params import Params
from daskopt.dashboard.snapshot import SnapshotBuilder
from daskopt.dashboard.table import Table
from daskopt.dashboard.timeline import Timeline
from tests.dashboard.conftest import by_state, fed, unpruned


def test_history_holds_completed_values_and_a_monotone_best(study):
    history = fed(History(study.direction), SnapshotBuilder(study))
    complete = by_state(study, "COMPLETE")
    assert sorted(history.source.data["number"]) == sorted(t.number for t in complete)
    assert sorted(history.source.data["value"]) == sorted(t.value for t in complete)
    best = history.best_source.data["best"]
    assert all(later <= earlier for earlier, later in zip(best, best[1:], strict=False))
    assert best[-1] == study.best_value


def test_pareto_front_is_the_studys_front():
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=30)
    component = fed(ParetoHistory(study.directions, ["a", "b"]), SnapshotBuilder(study))
    assert len(component.source.data["x"]) == 30
    assert sorted(component.front_source.data["number"]) == sorted(t.number for t in study.best_trials)


def test_timeline_from_storage_packs_sequential_trials_into_one_row(study):
    timeline = fed(Timeline(), SnapshotBuilder(study))
    assert sorted(timeline.source.data["number"]) == [t.number for t in study.trials]
    assert set(timeline.source.data["row"]) == {"slot 0"}  # one at a time: the greedy packing needs one row
    assert timeline.source.data["state"] == [t.state.name for t in study.trials]
    assert all(r >= left for left, r in zip(timeline.source.data["left"], timeline.source.data["right"], strict=True))


def test_curves_have_one_line_per_reporting_trial_with_pruned_greyed(study):
    curves = fed(Curves(), SnapshotBuilder(study))
    reporting = [t for t in study.trials if t.intermediate_values]
    assert curves.source.data["number"] == [t.number for t in reporting]
    data = curves.source.data
    for number, ys, color in zip(data["number"], data["ys"], data["color"], strict=True):
        trial = study.trials[number]
        assert ys == [trial.intermediate_values[s] for s in sorted(trial.intermediate_values)]
        assert (color == base.STATE_COLORS["PRUNED"]) == (trial.state.name == "PRUNED")
    assert by_state(study, "PRUNED"), "the fixture should prune some trials"


def test_params_hold_one_column_per_parameter(study):
    params = fed(Params(study.direction), SnapshotBuilder(study))
    complete = by_state(study, "COMPLETE")
    assert params.source.data["number"] == [t.number for t in complete]
    assert params.source.data["p:kind"] == [t.params["kind"] for t in complete]
    assert params.source.data["p:x"] == [t.params["x"] for t in complete]
    for ys in params.parallel.data["ys"]:  # every parameter placed within its range
        assert len(ys) == 3 and all(0.0 <= y <= 1.0 for y in ys)


def test_table_lists_every_trial_with_its_fail_reason(study):
    table = fed(Table(), SnapshotBuilder(study))
    assert table.source.data["number"] == [t.number for t in study.trials]
    assert table.source.data["state"] == [t.state.name for t in study.trials]


COMPONENTS = {
    "history": lambda s: History(s.direction),
    "timeline": lambda s: Timeline(),
    "curves": lambda s: Curves(),
    "params": lambda s: Params(s.direction),
    "table": lambda s: Table(),
}


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_a_later_update_streams_the_new_rows_only(study, name):
    builder = SnapshotBuilder(study)
    component = fed(COMPONENTS[name](study), builder)
    before = len(component.source.data["number"])
    events = []
    component.root.document.on_change(lambda event: events.append(event))
    study.optimize(unpruned, n_trials=10)
    component.update(builder.update())
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent) and e.model is component.source]
    resets = [
        e
        for e in events
        if (isinstance(e, ModelChangedEvent) and e.attr == "data" or isinstance(e, ColumnDataChangedEvent))
        and e.model is component.source
    ]
    assert len(streamed) == 1 and not resets
    added = len(streamed[0].data["number"])
    assert 0 < added <= 10
    assert len(component.source.data["number"]) == before + added


def test_a_running_trial_is_patched_as_it_reports_and_finishes(study):
    builder = SnapshotBuilder(study)
    curves, table, timeline = Curves(), Table(), Timeline()
    for component in (curves, table, timeline):
        fed(component, builder)  # each update below goes to all three; the first one here to curves only
    table.update(snapshot := builder.update())
    trial = study.ask()
    trial.report(1.0, 0)
    snapshot = builder.update()
    assert [t.number for t in snapshot.new] == [trial.number]
    for component in (curves, table, timeline):
        component.update(snapshot)
    trial.report(0.5, 1)
    events = []
    curves.root.document.on_change(lambda event: events.append(event))
    curves.update(builder.update())
    assert any(isinstance(e, ColumnsPatchedEvent) and e.model is curves.source for e in events)
    assert curves.source.data["ys"][-1] == [1.0, 0.5]
    study.tell(trial, 0.25)
    snapshot = builder.update()
    assert [t.number for t in snapshot.changed] == [trial.number]
    assert [t.number for t in snapshot.finished] == [trial.number]
    for component in (curves, table, timeline):
        component.update(snapshot)
    assert curves.source.data["state"][-1] == "COMPLETE"
    assert table.source.data["state"][-1] == "COMPLETE" and table.source.data["value"][-1] == "0.25"
    assert timeline.source.data["state"][-1] == "COMPLETE"


def test_snapshot_counts_and_best_match_the_study(study):
    snapshot = SnapshotBuilder(study).update()
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        assert snapshot.counts.get(state, 0) == len(by_state(study, state))
    assert snapshot.best_value == study.best_value and snapshot.best_number == study.best_trial.number
    assert snapshot.finished_total == len(study.trials)


def test_row_window_follows_rollover():
    window = base.RowWindow(3)
    for key in range(5):
        window.add(key)
    assert [window.index(k) for k in range(5)] == [None, None, 0, 1, 2]


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    x, y = trial.suggest_float("x", 0, 1), trial.suggest_int("y", 0, 5)
    return x + y, (1 - x) ** 2


def define_by_run(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1, 1)
    return x * x + (trial.suggest_float("late", 0, 1) if trial.number >= 8 else 0.0)


@pytest.mark.parametrize(
    "directions, objective",
    [(["minimize"], unpruned), (["minimize", "maximize"], two_objectives), (["maximize"], define_by_run)],
    ids=["single", "two-objectives", "define-by-run"],
)
def test_the_whole_page_updates_without_errors(caplog, directions, objective):
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=2))
    study.optimize(objective, n_trials=6)
    page = Page(SnapshotBuilder(study))
    Document().add_root(page.root)
    page.update()
    study.optimize(objective, n_trials=6)
    page.update()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    assert len(page.table.source.data["number"]) == 12
    names = {name for trial in study.trials for name in trial.params}
    assert {c for c in page.params.source.data if c.startswith("p:")} == {f"p:{n}" for n in names}
    assert len(page.params.source.data["number"]) == len(by_state(study, "COMPLETE"))
