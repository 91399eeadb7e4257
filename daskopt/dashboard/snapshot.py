"""What the page shows, read incrementally from a running engine or from a study's storage.

Every browser session owns a :class:`SnapshotBuilder` (a cursor), so a tab opened late gets the whole
history in its first update and only deltas afterwards. An update touches only the tail of the trial
list and the trials it last saw unfinished: at 10,000 trials it costs what the few changed ones cost,
not what the study holds. Trials are read with ``deepcopy=False``; nothing here mutates them.

A trial a scheduler paused is RUNNING in storage with the user attribute ``suspended``; the page shows it
as a state of its own, ``SUSPENDED`` (:func:`state_name`), in the counts, the table and the curves. With
an engine, a trial that was paused and resumed ran in several stretches, each its own timeline span.
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

from daskopt import attributes
from daskopt.engine.state import TimelineEntry
from daskopt.engine.view import EngineView
from daskopt.optuna_access import all_trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
SUSPENDED = "SUSPENDED"  # a RUNNING trial that a scheduler paused, as the page names it
SpanKey = int | tuple[int, int]  # a trial's number for its first stretch, (number, k) for its k-th resumed one


def state_name(trial: FrozenTrial) -> str:
    """The state the page shows: Optuna's, or ``SUSPENDED`` for a RUNNING trial that is paused."""
    if trial.state == TrialState.RUNNING and trial.user_attrs.get(attributes.SUSPENDED):
        return SUSPENDED
    return trial.state.name


@dataclass
class Span:
    """One stretch of a trial's time for the timeline; ``worker`` is empty when storage is the source.

    ``key`` is the engine timeline's key (the number, or ``(number, k)`` for the k-th resumed stretch);
    from storage, the number: storage knows when a trial started and ended, not when it was paused.
    """

    key: SpanKey
    number: int
    worker: str
    started: float  # time.time()
    ended: float | None
    state: str

    @property
    def part(self) -> int:
        """0 for a trial's first stretch, k for its k-th resumed one."""
        return self.key[1] if isinstance(self.key, tuple) else 0


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
    spans_new: list[Span] = field(default_factory=list)  # stretches first seen now
    spans_changed: list[Span] = field(default_factory=list)  # passed on unended; now ended (or paused/resumed)
    counts: dict[str, int] = field(default_factory=dict)  # study-wide, by state_name (SUSPENDED apart)
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
        self._open: dict[int, tuple[str, int]] = {}  # unfinished: number -> (state_name, steps seen)
        self._counts: dict[str, int] = {}
        self._spans_seen = 0  # engine timeline entries passed on
        self._spans_open: dict[SpanKey, str] = {}  # spans passed on unended -> the state they were passed on with
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
            state = state_name(trial)
            self._count(state, +1)
            if trial.state not in FINISHED:
                self._open[trial.number] = (state, len(trial.intermediate_values))
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
        """Whether a trial seen unfinished changed state (paused or resumed included) or reported new steps
        (and re-arm the cursor)."""
        shown, steps = self._open[trial.number]
        state, n_steps = state_name(trial), len(trial.intermediate_values)
        if state == shown and n_steps == steps:
            return False
        self._count(shown, -1)
        self._count(state, +1)
        if trial.state in FINISHED:
            del self._open[trial.number]
        else:
            self._open[trial.number] = (state, n_steps)
        return True

    def _count(self, state: str, delta: int) -> None:
        self._counts[state] = self._counts.get(state, 0) + delta

    def _track_best(self, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE or len(self.study.directions) != 1 or trial.value is None:
            return
        value = trial.value
        if not math.isfinite(value):
            return
        if self._best is None or (value > self._best[0] if self._maximize else value < self._best[0]):
            self._best = (value, trial.number)

    def _engine_spans(self) -> tuple[list[Span], list[Span]]:
        """New and just-ended entries of the engine's timeline (a dict in assignment order, one entry per
        stretch: a stretch ends with the trial or, ``SUSPENDED``, when a scheduler pauses it)."""
        assert self.engine is not None  # called only with an engine
        timeline = self.engine.timeline
        fresh = list(itertools.islice(timeline.items(), self._spans_seen, None))
        self._spans_seen += len(fresh)
        ended = []
        for key in list(self._spans_open):
            entry = timeline.get(key)
            if entry is not None and entry.ended is not None:
                del self._spans_open[key]
                ended.append(_span(key, entry))
        spans = [_span(key, entry) for key, entry in fresh]
        self._spans_open.update((s.key, s.state) for s in spans if s.ended is None)
        return spans, ended

    def _storage_spans(self, new: list[FrozenTrial], changed: list[FrozenTrial]) -> tuple[list[Span], list[Span]]:
        """Spans from storage timestamps: a trial appears when it starts and changes when it ends, or while
        unended when it is paused or resumed (one span per trial: storage does not say when it paused)."""
        fresh, moved = [], []
        for trial in itertools.chain(new, changed):
            started = timestamp(trial.datetime_start)
            if started is None:
                continue  # WAITING: not started yet
            span = Span(trial.number, trial.number, "", started, timestamp(trial.datetime_complete), state_name(trial))
            shown = self._spans_open.get(trial.number)
            if shown is None:
                fresh.append(span)
            elif span.ended is not None or span.state != shown:
                moved.append(span)
            if span.ended is None:
                self._spans_open[trial.number] = span.state
            elif shown is not None:
                del self._spans_open[trial.number]
        fresh.sort(key=lambda s: s.started)
        return fresh, moved


def _span(key: SpanKey, entry: TimelineEntry) -> Span:
    return Span(key, entry.number, entry.worker, entry.started, entry.ended, entry.state)


def _at(trials: Sequence[FrozenTrial], number: int) -> FrozenTrial | None:
    """Trial ``number``; numbers are a study's list indices, checked rather than assumed."""
    if number < len(trials) and trials[number].number == number:
        return trials[number]
    return next((t for t in trials if t.number == number), None)
