"""What the page shows, read incrementally from a running engine or from a study's storage.

Every browser session owns a :class:`SnapshotBuilder` (a cursor), so a tab opened late gets the whole
history in its first update and only deltas afterwards. An update touches only the tail of the trial
list and the trials it last saw unfinished: at 10,000 trials it costs what the few changed ones cost,
not what the study holds. Trials are read with ``deepcopy=False``; nothing here mutates them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from daskopt.engine.state import TimelineEntry
from daskopt.engine.view import EngineView
from daskopt.optuna_access import all_trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class Span:
    """One trial's stretch of time for the timeline; ``worker`` is empty when storage is the source."""

    number: int
    worker: str
    started: float  # time.time()
    ended: float | None
    state: str


@dataclass
class Snapshot:
    """The deltas since this builder's previous update, plus totals the summary needs."""

    study_name: str
    directions: list[StudyDirection]
    now: float
    origin: float  # time.time() the time axes start from
    new: list[FrozenTrial] = field(default_factory=list)  # first seen now, number order
    changed: list[FrozenTrial] = field(default_factory=list)  # seen unfinished before; state or steps moved
    finished: list[FrozenTrial] = field(default_factory=list)  # newly finished, completion order
    spans_new: list[Span] = field(default_factory=list)
    spans_changed: list[Span] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # study-wide, by state name
    n_trials: int | None = None  # target outcomes, when known
    run_finished: int | None = None  # outcomes of this engine call (None without an engine)
    started_at: float | None = None  # engine start (None without an engine)
    best_value: float | None = None  # single objective only
    best_number: int | None = None
    trials: Sequence[FrozenTrial] = ()  # the whole list, shared, not copied (for importance)
    engine: EngineView | None = None

    @property
    def n_objectives(self) -> int:
        return len(self.directions)

    @property
    def finished_total(self) -> int:
        return sum(self.counts.get(state.name, 0) for state in FINISHED)


def timestamp(moment: Any) -> float | None:
    """Optuna stores naive local datetimes; ``.timestamp()`` reads them as local, matching ``time.time()``."""
    return moment.timestamp() if moment is not None else None


class SnapshotBuilder:
    """Reads a study (and an engine's timeline when there is one), remembering what it has passed on."""

    def __init__(self, study: optuna.Study, engine: EngineView | None = None, n_trials: int | None = None) -> None:
        self.study = study
        self.engine = engine
        self.n_trials = n_trials if engine is None else engine.config.n_trials
        self.origin: float | None = engine.started_at if engine is not None else None
        self._seen = 0  # trials[:_seen] were passed on
        self._open: dict[int, tuple[TrialState, int]] = {}  # unfinished: number -> (state, steps seen)
        self._counts: dict[str, int] = {}
        self._spans_seen = 0  # engine timeline entries passed on
        self._spans_open: set[int] = set()
        self._best: tuple[float, int] | None = None
        self._maximize = study.directions[0] == StudyDirection.MAXIMIZE

    def fetch(self) -> Sequence[FrozenTrial]:
        """All trials without copying (the storage's own objects for in-memory and journal storages)."""
        return all_trials(self.study)

    def update(self) -> Snapshot:
        trials = self.fetch()
        new = list(trials[self._seen :])
        changed = [t for t in (_at(trials, n) for n in list(self._open)) if t is not None and self._moved(t)]
        self._seen = len(trials)
        for trial in new:
            self._count(trial.state, +1)
            if trial.state not in FINISHED:
                self._open[trial.number] = (trial.state, len(trial.intermediate_values))
        finished = [t for t in new if t.state in FINISHED] + [t for t in changed if t.state in FINISHED]
        finished.sort(key=lambda t: (timestamp(t.datetime_complete) or 0.0, t.number))
        for trial in finished:
            self._track_best(trial)
        if self.origin is None:
            starts = [s for s in (timestamp(t.datetime_start) for t in trials[:64]) if s is not None]
            self.origin = min(starts) if starts else None
        snap = Snapshot(
            study_name=self.study.study_name,
            directions=list(self.study.directions),
            now=time.time(),
            origin=self.origin if self.origin is not None else time.time(),
            new=new,
            changed=changed,
            finished=finished,
            counts=dict(self._counts),
            n_trials=self.n_trials,
            trials=trials,
            engine=self.engine,
        )
        if self._best is not None:
            snap.best_value, snap.best_number = self._best
        if self.engine is not None:
            snap.run_finished, snap.started_at = self.engine.counts.finished, self.engine.started_at
            snap.spans_new, snap.spans_changed = self._engine_spans()
        else:
            snap.spans_new, snap.spans_changed = self._storage_spans(new, changed)
        return snap

    def _moved(self, trial: FrozenTrial) -> bool:
        """Whether a trial seen unfinished changed state or reported new steps (and re-arm the cursor)."""
        state, steps = self._open[trial.number]
        n_steps = len(trial.intermediate_values)
        if trial.state == state and n_steps == steps:
            return False
        self._count(state, -1)
        self._count(trial.state, +1)
        if trial.state in FINISHED:
            del self._open[trial.number]
        else:
            self._open[trial.number] = (trial.state, n_steps)
        return True

    def _count(self, state: TrialState, delta: int) -> None:
        self._counts[state.name] = self._counts.get(state.name, 0) + delta

    def _track_best(self, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE or len(self.study.directions) != 1 or trial.value is None:
            return
        value = trial.value
        if not math.isfinite(value):
            return
        if self._best is None or (value > self._best[0] if self._maximize else value < self._best[0]):
            self._best = (value, trial.number)

    def _engine_spans(self) -> tuple[list[Span], list[Span]]:
        """New and just-ended entries of the engine's timeline (a dict in assignment order)."""
        assert self.engine is not None  # called only with an engine
        timeline = self.engine.timeline
        fresh = list(itertools.islice(timeline.values(), self._spans_seen, None))
        self._spans_seen += len(fresh)
        ended = []
        for number in list(self._spans_open):
            entry = timeline.get(number)
            if entry is not None and entry.ended is not None:
                self._spans_open.discard(number)
                ended.append(_span(entry))
        spans = [_span(entry) for entry in fresh]
        self._spans_open.update(s.number for s in spans if s.ended is None)
        return spans, ended

    def _storage_spans(self, new: list[FrozenTrial], changed: list[FrozenTrial]) -> tuple[list[Span], list[Span]]:
        """Spans from storage timestamps: a trial appears when it starts and changes when it ends."""
        fresh, ended = [], []
        for trial in itertools.chain(new, changed):
            started = timestamp(trial.datetime_start)
            if started is None:
                continue  # WAITING: not started yet
            span = Span(trial.number, "", started, timestamp(trial.datetime_complete), trial.state.name)
            if trial.number in self._spans_open:
                if span.ended is not None:
                    self._spans_open.discard(trial.number)
                    ended.append(span)
            else:
                fresh.append(span)
                if span.ended is None:
                    self._spans_open.add(trial.number)
        fresh.sort(key=lambda s: s.started)
        return fresh, ended


def _span(entry: TimelineEntry) -> Span:
    return Span(entry.number, entry.worker, entry.started, entry.ended, entry.state)


def _at(trials: Sequence[FrozenTrial], number: int) -> FrozenTrial | None:
    """Trial ``number``; numbers are a study's list indices, checked rather than assumed."""
    if number < len(trials) and trials[number].number == number:
        return trials[number]
    return next((t for t in trials if t.number == number), None)
