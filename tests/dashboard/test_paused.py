"""Trials a scheduler paused and resumed: one timeline bar per stretch, a state of their own everywhere else.

The engine is faked: a study plus a timeline dict as the loop keeps it, the trial's number for its first
stretch and ``(number, k)`` for its k-th resumed one, a stretch that ended with a pause ``SUSPENDED``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsPatchedEvent, ColumnsStreamedEvent, ModelChangedEvent

from daskopt import attributes
from daskopt.dashboard.base import STATE_COLORS
from daskopt.dashboard.curves import Curves
from daskopt.dashboard.page import Page
from daskopt.dashboard.snapshot import SUSPENDED, SnapshotBuilder
from daskopt.dashboard.table import Table
from daskopt.dashboard.timeline import Timeline
from daskopt.engine.state import Counts, TimelineEntry
from tests.dashboard.conftest import fed


def fake_engine(study: optuna.Study, timeline: dict[Any, TimelineEntry], t0: float) -> SimpleNamespace:
    return SimpleNamespace(
        study=study,
        counts=Counts(),
        config=SimpleNamespace(n_trials=10),
        started_at=t0,
        client=None,
        timeline=timeline,
    )


def test_every_stretch_of_a_resumed_trial_is_a_bar_of_its_own():
    study = optuna.create_study()
    t0 = time.time() - 10
    timeline = {
        0: TimelineEntry(0, "tcp://w1:1", t0, t0 + 2, "SUSPENDED"),
        1: TimelineEntry(1, "tcp://w1:1", t0 + 0.5, None),
        (0, 1): TimelineEntry(0, "tcp://w2:1", t0 + 3, t0 + 5, "COMPLETE"),  # resumed on another worker
        (0, 2): TimelineEntry(0, "tcp://w1:1", t0 + 6, None),  # and again on the first, in the slot it freed
    }
    builder = SnapshotBuilder(study, fake_engine(study, timeline, t0))
    timeline_component = fed(Timeline(), builder)
    data = timeline_component.source.data
    assert data["number"] == [0, 1, 0, 0]
    assert data["state"] == ["SUSPENDED", "RUNNING", "COMPLETE", "RUNNING"]
    assert data["color"] == [STATE_COLORS[s] for s in data["state"]]
    assert data["row"] == ["w1:1 #0", "w1:1 #1", "w2:1 #0", "w1:1 #0"]
    assert data["part"] == ["", "", "(part 2)", "(part 3)"]
    assert data["left"] == pytest.approx([0, 0.5, 3, 6])
    assert [data["right"][0], data["right"][2]] == pytest.approx([2, 5])  # ended stretches end where they ended
    assert data["right"][1] >= 10 and data["right"][3] >= 10  # running ones reach now


def test_a_pause_patches_the_bar_and_the_resumed_stretch_streams_a_new_one():
    study = optuna.create_study()
    t0 = time.time() - 10
    timeline: dict[Any, TimelineEntry] = {0: TimelineEntry(0, "tcp://w1:1", t0), 1: TimelineEntry(1, "tcp://w1:1", t0)}
    builder = SnapshotBuilder(study, fake_engine(study, timeline, t0))
    component = fed(Timeline(), builder)
    assert component.source.data["row"] == ["w1:1 #0", "w1:1 #1"]
    events: list[Any] = []
    component.root.document.on_change(lambda event: events.append(event))

    timeline[0].ended, timeline[0].state = t0 + 2, "SUSPENDED"  # paused: its slot is free
    timeline[(0, 1)] = TimelineEntry(0, "tcp://w2:1", t0 + 3)  # resumed on another worker
    snapshot = builder.update()
    assert [s.key for s in snapshot.spans_changed] == [0]
    assert [(s.key, s.number, s.part) for s in snapshot.spans_new] == [((0, 1), 0, 1)]
    component.update(snapshot)
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent) and e.model is component.source]
    patched = [e for e in events if isinstance(e, ColumnsPatchedEvent) and e.model is component.source]
    resets = [
        e
        for e in events
        if (isinstance(e, ModelChangedEvent) and e.attr == "data" or isinstance(e, ColumnDataChangedEvent))
        and e.model is component.source
    ]
    assert len(streamed) == 1 and len(patched) == 1 and not resets
    assert streamed[0].data["number"] == [0] and streamed[0].data["part"] == ["(part 2)"]
    assert patched[0].patches["state"] == [(0, "SUSPENDED")]
    assert patched[0].patches["color"] == [(0, STATE_COLORS["SUSPENDED"])]
    data = component.source.data
    assert data["state"] == ["SUSPENDED", "RUNNING", "RUNNING"]
    assert data["row"] == ["w1:1 #0", "w1:1 #1", "w2:1 #0"]
    assert data["right"][0] == pytest.approx(2)  # a paused stretch stops following the clock

    timeline[(0, 1)].ended, timeline[(0, 1)].state = t0 + 5, "COMPLETE"
    timeline[(1, 1)] = TimelineEntry(1, "tcp://w1:1", t0 + 6)  # a key of the same shape for another trial
    component.update(builder.update())
    data = component.source.data
    assert data["number"] == [0, 1, 0, 1]
    assert data["state"] == ["SUSPENDED", "RUNNING", "COMPLETE", "RUNNING"]
    assert data["right"][2] == pytest.approx(5)
    assert data["row"][3] == "w1:1 #0"  # the slot trial 0's first stretch freed
    assert set(data["color"]) >= {STATE_COLORS["SUSPENDED"], STATE_COLORS["COMPLETE"], STATE_COLORS["RUNNING"]}


def test_the_suspended_colour_is_its_own():
    others = [color for state, color in STATE_COLORS.items() if state != SUSPENDED]
    assert STATE_COLORS[SUSPENDED] not in others


def test_a_paused_trial_counts_and_shows_as_suspended_until_resumed():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    trial = study.ask()
    trial.report(1.0, 0)
    builder = SnapshotBuilder(study)
    table, curves, timeline = Table(), Curves(), Timeline()
    for component in (table, curves, timeline):
        Document().add_root(component.root)
    snapshot = builder.update()
    for component in (table, curves, timeline):
        component.update(snapshot)
    assert snapshot.counts.get("RUNNING") == 1 and not snapshot.counts.get(SUSPENDED)

    trial.set_user_attr(attributes.SUSPENDED, True)  # paused: RUNNING in storage, steps unchanged
    snapshot = builder.update()
    assert [t.number for t in snapshot.changed] == [trial.number] and not snapshot.finished
    assert snapshot.counts.get(SUSPENDED) == 1 and not snapshot.counts.get("RUNNING")
    assert [(s.number, s.state, s.ended) for s in snapshot.spans_changed] == [(trial.number, SUSPENDED, None)]
    for component in (table, curves, timeline):
        component.update(snapshot)
    assert table.source.data["state"][-1] == SUSPENDED
    assert curves.source.data["state"][-1] == SUSPENDED
    assert timeline.source.data["state"][-1] == SUSPENDED
    assert timeline.source.data["color"][-1] == STATE_COLORS[SUSPENDED]
    assert len(timeline.source.data["number"]) == 4  # from storage: one bar per trial, patched

    trial.set_user_attr(attributes.SUSPENDED, False)  # resumed
    snapshot = builder.update()
    assert snapshot.counts.get("RUNNING") == 1 and not snapshot.counts.get(SUSPENDED)
    for component in (table, curves, timeline):
        component.update(snapshot)
    assert table.source.data["state"][-1] == "RUNNING"
    assert timeline.source.data["state"][-1] == "RUNNING"

    study.tell(trial, 0.5)
    snapshot = builder.update()
    assert snapshot.counts.get("COMPLETE") == 4 and not snapshot.counts.get("RUNNING")
    assert not snapshot.counts.get(SUSPENDED)
    timeline.update(snapshot)
    assert timeline.source.data["state"][-1] == "COMPLETE"


def test_the_summary_counts_paused_trials_apart():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    running, paused = study.ask(), study.ask()
    paused.set_user_attr(attributes.SUSPENDED, True)
    t0 = time.time() - 5
    timeline = {
        running.number: TimelineEntry(running.number, "tcp://w1:1", t0),
        paused.number: TimelineEntry(paused.number, "tcp://w1:1", t0, t0 + 1, "SUSPENDED"),
    }
    page = Page(SnapshotBuilder(study, fake_engine(study, timeline, t0)))
    Document().add_root(page.root)
    page.update()
    tiles = page.summary.tiles.text
    assert "class='daskopt-running'>1<" in tiles and "class='daskopt-paused'>1<" in tiles
    assert page.table.source.data["state"] == ["COMPLETE", "COMPLETE", "RUNNING", SUSPENDED]
    paused.set_user_attr(attributes.SUSPENDED, False)  # resumed: no paused tile any more
    page.update()
    assert "daskopt-paused" not in page.summary.tiles.text
    assert "class='daskopt-running'>2<" in page.summary.tiles.text
