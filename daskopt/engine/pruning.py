"""Prune decisions against a cached list of the finished trials.

Optuna's percentile-type pruners (``MedianPruner``, ``PercentilePruner``, ``WilcoxonPruner``) and
``HyperbandPruner``'s set-up ask the study for its COMPLETE trials on every decision, and the storage
rebuilds that list each time: a scan of every trial in memory, a query plus a sort with SQLite/journal
storages. At 10,000 trials that scan was 46% of the loop thread's time (benchmarks/RESULTS.md, scale).

A finished trial never changes, and the engine tells every trial of its own run, so the loop keeps the
finished trials itself, appended as they are told, and hands the pruner a study view that answers
"finished trials in these states" from that list. Trials finished by anyone else (another driver on the
same storage) arrive with a full re-read at most every ``refresh_s`` seconds, so a decision may miss
another process's last few seconds of results; this process's results are always there. Every other
question (all trials, running ones, storage writes such as ASHA's rung attributes) goes to the real study.

The percentile pruners' threshold at a step (the percentile of every COMPLETE trial's value there) is kept
the same way: each step's values sorted, a finished trial inserted as it is told (:class:`StepValues`), so
a decision costs O(log n) instead of a pass over every completed trial. Recomputing it whenever a trial
finished was the loop's largest cost with 1,000 trials at once (benchmarks/concurrency.py).
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from daskopt.optuna_access import install_percentile_cache, latest_frozen, percentile_cache, reported_values

FINISHED_STATES = frozenset({TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL})


class StepValues:
    """The COMPLETE trials' reported values at each step, sorted, for percentile thresholds in O(log n)."""

    def __init__(self) -> None:
        self._sorted: dict[int, list[float]] = {}  # step -> its non-NaN values, ascending
        self._counts: dict[int, int] = {}  # step -> how many trials reported it, NaN included

    def add(self, values: dict[int, float]) -> None:
        for step, value in values.items():
            self._counts[step] = self._counts.get(step, 0) + 1
            if not math.isnan(value):
                bisect.insort(self._sorted.setdefault(step, []), float(value))

    def percentile(self, step: int, q: float, n_min_trials: int) -> float:
        """``numpy.nanpercentile`` (linear method) of the values at ``step``, bit for bit; NaN when fewer than
        ``n_min_trials`` trials reported the step (NaN reports counted, as Optuna counts them) or all are NaN."""
        if self._counts.get(step, 0) < n_min_trials:
            return math.nan
        ordered = self._sorted.get(step)
        if not ordered:
            return math.nan
        virtual = (len(ordered) - 1) * (q / 100.0)
        if virtual >= len(ordered) - 1:  # NumPy's clipping: both neighbours are the last value
            below = above = -1
        else:
            below = math.floor(virtual)
            above = below + 1
        gamma = virtual - below
        a, b = ordered[below], ordered[above]
        diff = b - a
        return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


class FinishedTrials:
    """The study's finished trials per state, ordered by number (as Optuna's storages return them)."""

    def __init__(self, study: optuna.Study, refresh_s: float = 5.0) -> None:
        self._study = study
        self._refresh_s = refresh_s
        self._by_state: dict[TrialState, list[FrozenTrial]] = {}
        self._numbers: dict[TrialState, list[int]] = {}
        self._known: set[int] = set()
        self._read_at = -float("inf")
        self._shared: dict[frozenset[TrialState], tuple[int, list[FrozenTrial]]] = {}
        self.complete_steps = StepValues()
        self.version = 0  # changes whenever the lists do

    def add(self, trial: FrozenTrial) -> None:
        """Record a trial this engine just told (ignored unless finished, or if already known)."""
        if trial.state not in FINISHED_STATES or trial.number in self._known:
            return
        self._known.add(trial.number)
        self.version += 1
        numbers = self._numbers.setdefault(trial.state, [])
        at = bisect.bisect(numbers, trial.number)
        numbers.insert(at, trial.number)
        self._by_state.setdefault(trial.state, []).insert(at, trial)
        if trial.state == TrialState.COMPLETE:
            self.complete_steps.add(trial.intermediate_values)

    def count(self, state: TrialState) -> int:
        return len(self._by_state.get(state, ()))

    def fresh(self) -> None:
        """Read the trials finished elsewhere if ``refresh_s`` has passed since the last read."""
        if time.monotonic() - self._read_at > self._refresh_s:
            self._reread()

    def get(self, states: Iterable[TrialState], shared: bool = False) -> list[FrozenTrial]:
        """Finished trials in ``states``, by number: a fresh list the caller may keep or change, or with
        ``shared`` one list per change of the trials, for callers known never to change it (no O(n) copy
        per decision)."""
        self.fresh()
        key = frozenset(states)
        if shared:
            version, trials = self._shared.get(key, (-1, []))
            if version == self.version:
                return trials
        lists = [self._by_state.get(state, []) for state in key]
        trials = list(lists[0]) if len(lists) == 1 else list(heapq.merge(*lists, key=lambda t: t.number))
        if shared:
            self._shared[key] = (self.version, trials)
        return trials

    def _reread(self) -> None:
        """Add the trials finished elsewhere since the last read (a finished trial never changes)."""
        for trial in self._study.get_trials(deepcopy=False, states=tuple(FINISHED_STATES)):
            self.add(trial)
        self._read_at = time.monotonic()


class PrunerStudy:
    """The study as a pruner sees it: finished-trial queries answered from :class:`FinishedTrials`."""

    def __init__(self, study: optuna.Study, finished: FinishedTrials, shared: bool = False) -> None:
        self._study = study
        self._finished = finished
        self._shared = shared  # the pruner only reads the lists it is handed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if not deepcopy and states is not None and _only_finished(states):
            return self._finished.get(states, shared=self._shared)  # type: ignore[arg-type]
        return self._study.get_trials(deepcopy=deepcopy, states=states)


def _only_finished(states: Container[TrialState]) -> bool:
    try:
        return all(state in FINISHED_STATES for state in states)  # type: ignore[attr-defined]
    except TypeError:  # a Container that cannot be iterated: let the study answer
        return False


class StepSummary:
    """The three steps of a trial's reports that a percentile pruner's decision depends on.

    ``PercentilePruner.prune`` (and ``MedianPruner``, its 50th percentile) reads of the trial only its
    last step, the step before it (the interval check) and its best value so far; it finds each by going
    over every reported step, so one decision costs O(steps): 65% of the loop thread's time at 2,000
    reports per trial (result_throughput). This summary follows new steps as they arrive (a trial's
    reports keep their insertion order and are never overwritten), so the pruner can be handed a trial
    holding just those three steps and decide exactly as it would on all of them.
    """

    def __init__(self, maximize: bool) -> None:
        self._maximize = maximize
        self._seen = 0
        self.last: int | None = None
        self.second_last: int | None = None
        self.best: int | None = None  # step of the best non-NaN value (the study's direction)
        self.best_value = math.nan

    def keep(self, values: dict[int, float]) -> dict[int, float]:
        """Read the steps reported since the last call; the reports the pruner needs, by step."""
        new = len(values) - self._seen
        if new > 0:
            steps = iter(reversed(values))  # newest first: no walk over the old ones
            for step in reversed([next(steps) for _ in range(new)]):
                self._add(step, values[step])
            self._seen = len(values)
        return {step: values[step] for step in {self.last, self.second_last, self.best} if step is not None}

    def _add(self, step: int, value: float) -> None:
        if self.last is None or step > self.last:
            self.last, self.second_last = step, self.last
        elif self.second_last is None or step > self.second_last:
            self.second_last = step
        if not math.isnan(value) and (self.best is None or self._better(value, self.best_value)):
            self.best, self.best_value = step, value

    def _better(self, value: float, than: float) -> bool:
        return value > than if self._maximize else value < than


@dataclass(frozen=True)
class PercentileRule:
    """What ``PercentilePruner.prune`` (``MedianPruner``: 50) decides with, read from the pruner once.

    The engine decides with it itself, step for step as ``PercentilePruner.prune`` does (the same in Optuna
    4.5 and 5.0; tests/engine/test_pruning.py compares every decision with Optuna's own): from the trial's
    :class:`StepSummary` and the completed trials' :class:`StepValues`. Handing Optuna's method a trial and
    a study view cost about 40 µs a decision (a copy of the frozen trial, ``numpy.nanmin`` of its three
    steps), which at 2,000 trials at once, each reporting twice a second, was a third of the loop thread
    (benchmarks/concurrency.py)."""

    percentile: float
    n_startup_trials: int
    n_warmup_steps: int
    interval_steps: int
    n_min_trials: int

    @classmethod
    def of(cls, pruner: optuna.pruners.BasePruner) -> PercentileRule | None:
        """The rule of exactly ``MedianPruner`` or ``PercentilePruner`` (a subclass may decide otherwise),
        or ``None`` when this Optuna's pruner does not keep its settings where expected."""
        if type(pruner) not in (optuna.pruners.MedianPruner, optuna.pruners.PercentilePruner):
            return None
        try:
            rule = cls(
                float(pruner._percentile),  # type: ignore[attr-defined]
                int(pruner._n_startup_trials),  # type: ignore[attr-defined]
                int(pruner._n_warmup_steps),  # type: ignore[attr-defined]
                int(pruner._interval_steps),  # type: ignore[attr-defined]
                int(pruner._n_min_trials),  # type: ignore[attr-defined]
            )
        except (AttributeError, TypeError, ValueError):
            return None
        return rule if rule.interval_steps >= 1 else None

    def prune(self, summary: StepSummary, finished: FinishedTrials, maximize: bool) -> bool:
        n_trials = finished.count(TrialState.COMPLETE)
        if n_trials == 0 or n_trials < self.n_startup_trials:
            return False
        step = summary.last
        if step is None or step < self.n_warmup_steps:
            return False
        warmup, interval = self.n_warmup_steps, self.interval_steps
        nearest_lower_pruning_step = (step - warmup) // interval * interval + warmup
        second_last = -1 if summary.second_last is None else summary.second_last
        if not second_last < nearest_lower_pruning_step:  # not the first report of its interval
            return False
        best = summary.best_value
        if math.isnan(best):
            return True
        percentile = 100 - self.percentile if maximize else self.percentile
        threshold = finished.complete_steps.percentile(step, percentile, self.n_min_trials)
        if math.isnan(threshold):
            return False
        return best < threshold if maximize else best > threshold


class PruneDecider:
    """Asks the study's pruner about a running trial, as ``optuna.Trial.should_prune`` does."""

    def __init__(self, study: optuna.Study, refresh_s: float = 5.0) -> None:
        self.finished = FinishedTrials(study, refresh_s)
        self._study = study
        # only these two classes exactly: a subclass may read more of the trial than the three steps, or
        # change the lists it is handed
        self._summarize = type(study.pruner) in (optuna.pruners.MedianPruner, optuna.pruners.PercentilePruner)
        self._view = PrunerStudy(study, self.finished, shared=self._summarize)
        self._summaries: dict[int, StepSummary] = {}
        self._cache = self._summarize and install_percentile_cache()
        single = len(study.directions) == 1  # reports (and so pruning) are for single-objective studies only
        self._rule = PercentileRule.of(study.pruner) if single else None
        self._maximize = single and study.directions[0] == optuna.study.StudyDirection.MAXIMIZE

    def should_prune(self, trial: optuna.Trial) -> bool:
        if self._rule is not None and (reported := reported_values(trial)) is not None:
            summary = self._summary(trial.number)
            summary.keep(reported)
            self.finished.fresh()
            return self._rule.prune(summary, self.finished, self._maximize)
        latest = latest_frozen(trial)  # what should_prune hands the pruner (reports included)
        if latest is None:  # an Optuna without it: its own path, uncached
            return bool(trial.should_prune())
        if self._summarize:
            summary = self._summary(latest.number)
            latest.intermediate_values = summary.keep(latest.intermediate_values)  # a copy: the trial keeps all
        if self._cache:
            with percentile_cache(self._threshold):
                return bool(self._study.pruner.prune(self._view, latest))  # type: ignore[arg-type]
        return bool(self._study.pruner.prune(self._view, latest))  # type: ignore[arg-type]

    def _summary(self, number: int) -> StepSummary:
        summary = self._summaries.get(number)
        if summary is None:
            summary = self._summaries[number] = StepSummary(self._maximize)
        return summary

    def _threshold(self, compute: Callable[..., float], completed: list[FrozenTrial], *args: Any) -> float:
        """The percentile over the completed trials at a step, from the sorted values kept as trials finish
        (``compute``, Optuna's own, walked every completed trial: 3 ms a call at 2,000 of them). The pruner
        was handed this engine's view, so ``completed`` is its COMPLETE list; anything else (another
        caller's list, an Optuna whose function takes other arguments) goes to ``compute``."""
        if len(args) != 4 or not completed or len(completed) != self.finished.count(TrialState.COMPLETE):
            return compute(completed, *args)
        direction, step, percentile, n_min_trials = args
        if direction == optuna.study.StudyDirection.MAXIMIZE:
            percentile = 100 - percentile
        return self.finished.complete_steps.percentile(step, percentile, n_min_trials)

    def forget(self, number: int) -> None:
        """The trial has finished: drop its summary."""
        self._summaries.pop(number, None)
