"""The tracking contract: per-trial loggers on the workers, study loggers on the driver.

Two extension points, each a class with no-op hooks (override what you need):

- :class:`TrialLogger` lives inside one trial's Dask task on a worker. It is built from the plain-data
  ``Assignment.tracking`` settings after the trial is assigned, so it never travels as a pickle.
- :class:`StudyLogger` lives in the client process and is called by the engine loop, the one place that
  knows every trial's final outcome. Anything that must see the whole study (an event log, a best-so-far
  curve) belongs here; workers may not even share a filesystem with the driver.

Both are called through :class:`TrialLoggers` / :class:`StudyLoggers`, which catch every exception a logger
raises, log one warning for it (with any W&B API key in the message masked) and go on: a tracking failure
never fails a trial or the study.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

logger = logging.getLogger("daskopt.tracking")


@dataclass(frozen=True)
class TrialStart:
    """What a trial logger knows when the trial starts (define-by-run parameters are not known yet)."""

    number: int
    params: dict[str, Any]
    user_attrs: dict[str, Any] = field(default_factory=dict)
    worker: str = ""


@dataclass(frozen=True)
class TrialEnd:
    """A trial's outcome as its task saw it. ``state`` is ``COMPLETE``, ``PRUNED`` or ``FAIL``; the loop
    may still record another one (a trial it cancelled at the study's end that then returned a value)."""

    number: int
    state: str
    values: list[float] | None
    params: dict[str, Any]
    duration_s: float
    worker: str = ""
    error: str | None = None


class TrialLogger:
    """Per-trial hooks, called inside the trial's task on the worker.

    Who calls what, for one trial, always on the thread that runs the objective:

    - ``trial_start`` by the task, once, after the trial is assigned and before the objective runs;
    - ``report`` by ``trial.report(value, step)``, once per step (repeated steps are ignored, as in Optuna);
    - ``log`` by ``trial.log(metrics, step)``, for any extra metrics the objective records;
    - ``trial_end`` by the task, exactly once, in a ``finally``: also when the objective raised, was
      pruned, or ``trial_start`` failed. Release everything here.

    One instance serves one trial; several trials of one worker process run concurrently in threads, each
    with its own instance, so an implementation must not rely on process-global "current" state.
    A hook may raise: the caller logs a warning and the trial goes on.
    """

    def trial_start(self, start: TrialStart) -> None:
        """The trial begins."""

    def report(self, value: float, step: int) -> None:
        """An intermediate objective value at ``step``."""

    def log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        """Extra metrics; ``step`` ``None`` means "the logger's current step"."""

    def trial_end(self, end: TrialEnd) -> None:
        """The trial is over; flush and close."""


class StudyLogger:
    """Study-level hooks, called by the engine loop on its event-loop thread in the client process.

    - ``study_start`` once when ``optimize()`` starts its loop, before any trial is assigned;
    - ``trial_started`` when a trial is handed to a task (``worker`` is the Dask worker's address);
    - ``trial_finished`` right after the trial's outcome is told to the study, for every outcome of this
      call (also trials failed before they started, and attempts that will be retried);
    - ``study_end`` once when the loop ends, after the last tell, also when it ends with an error.

    Hooks run on the loop: keep them short (no network waits per trial). A hook may raise: the caller logs
    a warning and the study goes on.
    """

    def study_start(self, study: optuna.Study) -> None:
        """The loop starts."""

    def trial_started(self, study: optuna.Study, number: int, params: dict[str, Any], worker: str) -> None:
        """A trial was assigned to a task on ``worker``."""

    def trial_finished(self, study: optuna.Study, frozen: optuna.trial.FrozenTrial, worker: str) -> None:
        """A trial's outcome was recorded."""

    def study_end(self, study: optuna.Study) -> None:
        """The loop ended; flush and close."""


class TrialLoggers(TrialLogger):
    """Several trial loggers as one; a failing hook is logged once per logger and hook, never raised."""

    def __init__(self, loggers: Sequence[TrialLogger]) -> None:
        self.loggers = list(loggers)
        self._number: int | None = None
        self._warned: set[tuple[int, str]] = set()

    def trial_start(self, start: TrialStart) -> None:
        self._number = start.number
        self._each("trial_start", start)

    def report(self, value: float, step: int) -> None:
        self._each("report", value, step)

    def log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        self._each("log", metrics, step)

    def trial_end(self, end: TrialEnd) -> None:
        self._number = end.number
        self._each("trial_end", end)

    def _each(self, hook: str, *args: Any) -> None:
        where = f"trial {self._number}" if self._number is not None else "a trial"
        call_each(self.loggers, self._warned, hook, args, f" for {where}; the trial goes on")


class StudyLoggers(StudyLogger):
    """Several study loggers as one; a failing hook is logged (once per logger and hook), never raised."""

    def __init__(self, loggers: Sequence[StudyLogger]) -> None:
        self.loggers = list(loggers)
        self._warned: set[tuple[int, str]] = set()

    def study_start(self, study: optuna.Study) -> None:
        self._each("study_start", study)

    def trial_started(self, study: optuna.Study, number: int, params: dict[str, Any], worker: str) -> None:
        self._each("trial_started", study, number, params, worker)

    def trial_finished(self, study: optuna.Study, frozen: optuna.trial.FrozenTrial, worker: str) -> None:
        self._each("trial_finished", study, frozen, worker)

    def study_end(self, study: optuna.Study) -> None:
        self._each("study_end", study)

    def _each(self, hook: str, *args: Any) -> None:
        call_each(self.loggers, self._warned, hook, args, "; the study goes on")


def call_each(
    loggers: Sequence[Any], warned: set[tuple[int, str]], hook: str, args: tuple[Any, ...], note: str
) -> None:
    """Call ``hook`` on every logger; a failure is warned about once per logger and hook, never raised:
    tracking must never fail a trial or the study."""
    for index, item in enumerate(loggers):
        try:
            getattr(item, hook)(*args)
        except Exception as exc:
            if (index, hook) not in warned:
                warned.add((index, hook))
                warn(f"{type(item).__name__}.{hook} failed{note}", exc)


def warn(what: str, exc: BaseException) -> None:
    """One warning line for a tracking failure, with any API key masked."""
    logger.warning("daskopt: %s: %s", what, redact(f"{type(exc).__name__}: {exc}"))


def redact(text: str) -> str:
    """``text`` with the value of ``WANDB_API_KEY`` (if set) replaced by ``***``."""
    key = os.environ.get("WANDB_API_KEY", "")
    return text.replace(key, "***") if len(key) >= 4 else text


# Study loggers that finish in the background (the W&B study run) and whose end is being waited for later.
_late_ends_lock = threading.Lock()
_late_ends: list[threading.Thread] | None = None


@contextlib.contextmanager
def study_ends_overlapped() -> Iterator[None]:
    """Inside, a study logger's background end (the W&B study run's last writes and finish, ~0.5 s of
    CPU in the driver) is not waited for in ``study_end``; leaving waits for all of them, also on error.

    ``daskopt run``, and ``optimize()`` when it starts its own ``LocalCluster``, wrap the cluster in this,
    so that the study run finishes while the cluster shuts down instead of before it; either way the run
    is finished when the call returns.
    """
    global _late_ends
    with _late_ends_lock:
        outermost = _late_ends is None
        if outermost:
            _late_ends = []
    try:
        yield
    finally:
        if outermost:
            with _late_ends_lock:
                pending, _late_ends = _late_ends or [], None
            for thread in pending:
                thread.join()


def wait_for_end(thread: threading.Thread) -> None:
    """Wait for a study logger's background end now, or when :func:`study_ends_overlapped` is left."""
    with _late_ends_lock:
        if _late_ends is not None:
            _late_ends.append(thread)
            return
    thread.join()
