"""Bookkeeping of the trials the loop is running, and the counts shown as progress."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import optuna
from optuna.distributions import BaseDistribution

from daskopt.engine.channel import Connection

CONSTRAINTS_KEY = "constraints"  # where Optuna keeps a trial's constraint values (system attrs)


@dataclass
class TaskState:
    """What the loop knows about one connected trial task."""

    task_id: int
    worker: str
    pid: int
    has_objective: bool = False
    run: TrialRun | None = None


class JointValue(NamedTuple):
    """One parameter of a trial's joint sample: its distribution (object and JSON) and value."""

    distribution: BaseDistribution
    distribution_json: str
    value: Any


class AskFailed(Exception):
    """The sampler failed on a trial it had already created (a declared parameter): the trial is failed
    with ``error``, as a suggest that raises in the objective fails its trial in Optuna."""

    def __init__(self, trial: optuna.Trial, error: Exception) -> None:
        super().__init__(str(error))
        self.trial = trial
        self.error = error


@dataclass
class TrialRun:
    """One trial from ask to tell, as the loop tracks it."""

    trial: optuna.Trial
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    conn: Connection | None = None
    started: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    prune_request: int = 0  # the trial's latest should_prune() question, answered in Engine._decide
    prune_enabled: bool = True
    finished: bool = False
    joint: dict[str, JointValue] = field(default_factory=dict)  # the sampler's joint sample, for PARAM
    # movable trials (engine/movable.py)
    last_step: int | None = None  # the latest report, as a scheduler sees it
    last_value: float = float("nan")
    checkpoint_step: int | None = None  # the newest checkpoint the trial told the loop about
    restore: tuple[int, int | None] | None = None  # (checkpoint folder key, step or None) it starts from
    restore_below: int | None = None  # with step None: the newest checkpoint at or below this step
    paused_at: int | None = None  # the step it is paused at, while suspended
    carried: dict[int, float] = field(default_factory=dict)  # reports it carries from the trial it goes on from
    action: Any = None  # the scheduler's latest decision about it
    segments: int = 0  # times it was assigned to a task (a resumed trial runs in several stretches)
    timeline_key: int | tuple[int, int] | None = None  # its current stretch in Engine.timeline

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def worker(self) -> str:
        state = self.conn.state if self.conn is not None else None
        return state.worker if isinstance(state, TaskState) else ""


@dataclass
class Counts:
    """Outcomes of this ``optimize()`` call, for the progress line and the stop condition."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    retried: int = 0
    best: float | None = None

    @property
    def finished(self) -> int:
        """Outcomes that count toward ``n_trials`` (retried attempts excluded)."""
        return self.complete + self.pruned + self.failed

    def record(self, trial: optuna.trial.FrozenTrial, study: optuna.Study, retried: bool) -> None:
        if retried:
            self.retried += 1
        elif trial.state == optuna.trial.TrialState.COMPLETE:
            self.complete += 1
            self._update_best(study, trial)
        elif trial.state == optuna.trial.TrialState.PRUNED:
            self.pruned += 1
        else:
            self.failed += 1

    def _update_best(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """The best value so far, moved by each completed trial of this call. The study is asked only for the
        first one (trials of earlier runs count) and in constrained studies (Optuna's best is the best
        feasible trial): storages without a cached best (journal) scan every trial to answer, which made the
        cost of a trial grow with the study."""
        if len(study.directions) != 1:
            return
        if self.best is None or trial.system_attrs.get(CONSTRAINTS_KEY) is not None:
            try:
                best = study.best_value
            except ValueError:
                return
        elif trial.value is None:
            return
        elif study.direction == optuna.study.StudyDirection.MAXIMIZE:
            best = max(self.best, trial.value)
        else:
            best = min(self.best, trial.value)
        self.best = best if math.isfinite(best) else self.best


@dataclass
class TimelineEntry:
    """Where and when a trial ran, as only the loop knows it (storage has no worker). Read by the dashboard."""

    number: int
    worker: str
    started: float  # time.time()
    ended: float | None = None
    state: str = "RUNNING"


@dataclass
class FailFast:
    """Whether a call's first outcomes are all one and the same objective error.

    A setup mistake (a program that does not exist, an objective with the wrong signature, a search space
    that disagrees with the objective's ``suggest_*``) fails every trial the same way, and with the default
    ``catch`` the study would go on until all of ``n_trials`` are spent on it, which a rerun then treats as
    done. ``limit`` identical failures before anything completed or was pruned end the call instead.
    """

    limit: int | None
    message: str | None = None
    count: int = 0
    settled: bool = False  # a trial completed, was pruned, or failed otherwise: no setup error

    def failed(self, message: str) -> bool:
        """Record an objective's failure; True when it makes ``limit`` identical ones and nothing else."""
        if self.settled or self.limit is None:
            return False
        if self.message is not None and message != self.message:
            self.settled = True
            return False
        self.message, self.count = message, self.count + 1
        return self.count >= self.limit

    def succeeded(self) -> None:
        self.settled = True
