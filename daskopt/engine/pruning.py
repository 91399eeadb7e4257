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
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Container, Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED_STATES = frozenset({TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL})


class FinishedTrials:
    """The study's finished trials per state, ordered by number (as Optuna's storages return them)."""

    def __init__(self, study: optuna.Study, refresh_s: float = 5.0) -> None:
        self._study = study
        self._refresh_s = refresh_s
        self._by_state: dict[TrialState, list[FrozenTrial]] = {}
        self._numbers: dict[TrialState, list[int]] = {}
        self._known: set[int] = set()
        self._read_at = -float("inf")

    def add(self, trial: FrozenTrial) -> None:
        """Record a trial this engine just told (ignored unless finished, or if already known)."""
        if trial.state not in FINISHED_STATES or trial.number in self._known:
            return
        self._known.add(trial.number)
        numbers = self._numbers.setdefault(trial.state, [])
        at = bisect.bisect(numbers, trial.number)
        numbers.insert(at, trial.number)
        self._by_state.setdefault(trial.state, []).insert(at, trial)

    def get(self, states: Iterable[TrialState]) -> list[FrozenTrial]:
        """Finished trials in ``states``, by number; a fresh list the caller may keep or change."""
        if time.monotonic() - self._read_at > self._refresh_s:
            self._reread()
        lists = [self._by_state.get(state, []) for state in set(states)]
        if len(lists) == 1:
            return list(lists[0])
        return list(heapq.merge(*lists, key=lambda t: t.number))

    def _reread(self) -> None:
        self._by_state, self._numbers, self._known = {}, {}, set()
        for trial in self._study.get_trials(deepcopy=False, states=tuple(FINISHED_STATES)):
            self.add(trial)
        self._read_at = time.monotonic()


class PrunerStudy:
    """The study as a pruner sees it: finished-trial queries answered from :class:`FinishedTrials`."""

    def __init__(self, study: optuna.Study, finished: FinishedTrials) -> None:
        self._study = study
        self._finished = finished

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if not deepcopy and states is not None and _only_finished(states):
            return self._finished.get(states)  # type: ignore[arg-type]
        return self._study.get_trials(deepcopy=deepcopy, states=states)


def _only_finished(states: Container[TrialState]) -> bool:
    try:
        return all(state in FINISHED_STATES for state in states)  # type: ignore[attr-defined]
    except TypeError:  # a Container that cannot be iterated: let the study answer
        return False


class PruneDecider:
    """Asks the study's pruner about a running trial, as ``optuna.Trial.should_prune`` does."""

    def __init__(self, study: optuna.Study, refresh_s: float = 5.0) -> None:
        self.finished = FinishedTrials(study, refresh_s)
        self._view = PrunerStudy(study, self.finished)
        self._study = study

    def should_prune(self, trial: optuna.Trial) -> bool:
        try:
            latest = trial._get_latest_trial()  # what should_prune hands the pruner (reports included)
        except AttributeError:  # a future Optuna without it: its own path, uncached
            return bool(trial.should_prune())
        return bool(self._study.pruner.prune(self._view, latest))  # type: ignore[arg-type]
