"""The engine loop's handling of what running trials send: the messages of each batch, the prune decisions
they ask for (the study's pruner, or a scheduler), how a trial's run ends (told, or lost and retried), and
the trials a scheduler pauses or clones.

A part of :class:`daskopt.engine.loop.Engine` (its base class), kept apart so each file holds one concern;
the attributes and methods it uses from the rest of the engine are declared below for type checking.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from daskopt import attributes, optuna_access
from daskopt.engine.channel import Connection
from daskopt.engine.define_by_run import DefineByRun
from daskopt.engine.elastic import ElasticTrials
from daskopt.engine.movable import Movable
from daskopt.engine.progress import Progress
from daskopt.engine.pruning import PruneDecider
from daskopt.engine.state import Counts, FailFast, TaskState, TimelineEntry, TrialRun
from daskopt.engine.watchdog import Watchdog
from daskopt.errors import ObjectiveError
from daskopt.protocol import events

if TYPE_CHECKING:
    from daskopt.engine.config import EngineConfig
    from daskopt.engine.trial_channel import TrialChannel
    from daskopt.tracking.base import StudyLogger

logger = logging.getLogger("daskopt")

STATES = {events.COMPLETE: TrialState.COMPLETE, events.PRUNED: TrialState.PRUNED, events.FAIL: TrialState.FAIL}
FAIL_RUNNING = "fail"  # a stop that fails the running trials (Engine._stop)
REPLICA_LOST = "daskopt.elastic.parts.ReplicaLost"  # a trial failing with it was lost, not failed
QUEUED = (events.FINISH, events.HELLO)  # handled after the reads at hand (TrialMessages._on_messages)
DRAIN_SLICE_S = 0.005  # the longest the loop works through queued messages before it reads again


class TrialMessages:
    """Trial messages, prune decisions and paused trials, for :class:`~daskopt.engine.loop.Engine`."""

    if TYPE_CHECKING:  # the engine's own, used here
        study: optuna.Study
        config: EngineConfig
        running: dict[int, TrialRun]
        timeline: dict[int | tuple[int, int], TimelineEntry]
        counts: Counts
        _token: str
        _waiting: deque[Connection]
        _later: deque[tuple[Connection, list[list[Any]] | None]]
        _behind: dict[Connection, int]
        _drain_due: bool
        _channel: TrialChannel
        _to_decide: set[int]
        _warned: set[str]
        _greeted: set[int]
        _fail_fast: FailFast
        _error: Exception | None
        _stopping: str | None
        _movable: Movable
        _elastic: ElasticTrials | None
        _pruning: PruneDecider
        _define_by_run: DefineByRun
        _watchdog: Watchdog
        _progress: Progress
        _trial_s: float | None
        _study_logger: StudyLogger
        _requeue_cut: bool

        def _fill(self) -> None: ...
        def _one_fill(self) -> contextlib.AbstractContextManager[None]: ...
        def _assign(self, conn: Connection, run: TrialRun, replicas: int | None = None) -> None: ...
        def _start_sized(self, run: TrialRun, replicas: int) -> None: ...
        def _stop(self, reason: str, running: str = ...) -> None: ...

    # ------------------------------------------------------------------------- trial messages
    def _on_messages(self, conn: Connection, messages: list[list[Any]]) -> None:
        """A batch from one task. Reports and prune questions are handled at once and answered when the
        batch ends. A trial's end and a task's start (a tell, an ask, an assignment: several times a
        report's cost) wait in a queue that the loop works through between reads (:meth:`_drain`), so a
        burst of trials ending together does not hold up the answers of the trials still running. A task's
        messages keep their order: once one of them waits, the ones after it wait behind it."""
        if conn in self._behind:
            self._queue(conn, messages)
            return
        for i, message in enumerate(messages):
            if conn.state is None or message[0] in QUEUED:
                self._queue(conn, messages[i:])
                break
            self._on_message(conn, message)
        self._decide()

    def _on_message(self, conn: Connection, message: list[Any]) -> None:
        if conn.state is None:
            self._on_hello(conn, message)
            return
        run = conn.state.run
        if message[0] in (events.FINISH, events.HELLO):
            self._watchdog.stopped(conn)  # a cancelled objective did stop
        if message[0] == events.HELLO and run is None:
            self._waiting.append(conn)  # a chaining task asks for its next trial
            self._fill()
            return
        if run is None or run.finished:
            return
        run.last_seen = time.monotonic()
        try:
            self._on_trial_message(run, message)
        except Exception as exc:  # a bad message fails its trial, never the loop
            logger.exception("daskopt: trial %d: could not handle message %r", run.number, message[:2])
            self._tell(run, TrialState.FAIL, reason=f"engine could not handle a message: {exc}")

    def _queue(self, conn: Connection, messages: list[list[Any]] | None) -> None:
        """Handle ``messages`` (``None``: the connection closed) after the reads at hand."""
        self._later.append((conn, messages))
        self._behind[conn] = self._behind.get(conn, 0) + 1
        if not self._drain_due:
            self._drain_due = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        """Work through queued messages for one slice of time, then let the loop read again (the reports
        that arrived meanwhile are answered before the rest of the queue). The slice's answers leave in one
        send per connection, and the freed slots are filled once, at its end."""
        self._drain_due = False
        until = time.perf_counter() + DRAIN_SLICE_S
        try:
            with self._channel.corked(), self._one_fill():
                while self._later and time.perf_counter() < until:
                    self._handle_queued()
        finally:  # the rest in the next slice, even after an error in this one
            if self._later and not self._drain_due:
                self._drain_due = True
                asyncio.get_running_loop().call_soon(self._drain)

    def _drain_all(self) -> None:
        """Everything queued, now: before a stop decides what becomes of running trials (one that finished
        is told as finished, not cancelled)."""
        with self._channel.corked():
            while self._later:
                self._handle_queued()

    def _handle_queued(self) -> None:
        conn, messages = self._later.popleft()
        left = self._behind[conn] - 1
        if left:
            self._behind[conn] = left
        else:
            del self._behind[conn]
        try:
            if messages is None:
                self._closed_now(conn)
                return
            for message in messages:
                self._on_message(conn, message)
            self._decide()
        except Exception:  # the next slice goes on; this task's trial is lost, and said so
            logger.exception("daskopt: the engine failed on a trial's message; closing that trial's channel only")
            conn.close()

    def _on_trial_message(self, run: TrialRun, message: list[Any]) -> None:
        kind = message[0]
        if kind == events.REPORT:
            self._on_report(run, message[1], message[2])
            if self._elastic is not None:
                self._elastic.heard(run, report=True)
        elif kind == events.PRUNE:
            self._on_prune(run, message[1])
        elif kind == events.SUGGEST:
            self._define_by_run.answer(run, message[1], message[2], message[3])
        elif kind == events.PARAM:
            self._define_by_run.record(run, message[1])
        elif kind == events.ATTR:
            self._on_attr(run, message[1], message[2], message[3])
        elif kind == events.FINISH:
            self._on_finish(run, message[1], message[2], message[3])
        elif kind == events.CHECKPOINT:
            run.checkpoint_step = int(message[1])
        elif kind == events.RESTORED:
            self._movable.restored(run, int(message[1]))
            if self._elastic is not None:
                self._elastic.restored(run, int(message[1]))
        elif kind == events.PROFILE and self._elastic is not None:
            self._elastic.profile(run, *message[1:6])
            self._elastic.heard(run)
        elif kind == events.WARN and message[1] not in self._warned:  # e.g. a range the file and code disagree on
            self._warned.add(message[1])
            logger.warning("daskopt: %s", message[2])

    def _on_hello(self, conn: Connection, message: list[Any]) -> None:
        if message[:2] == [events.PROBE, self._token]:  # a worker checking it can reach the direct channel
            conn.send([events.STOP])
            conn.close()
            return
        if len(message) != 6 or message[0] != events.HELLO or message[1] != self._token:
            conn.close()  # not one of our tasks
            return
        conn.state = TaskState(task_id=message[2], worker=message[4], pid=message[5], has_objective=bool(message[3]))
        self._greeted.add(message[2])
        sized = self._elastic.task_started(message[2]) if self._elastic else None
        if sized is not None:  # a task submitted for one elastic trial, holding its replicas' slots
            self._assign(conn, *sized)
        else:
            self._waiting.append(conn)
        self._fill()

    def _on_report(self, run: TrialRun, step: int, value: float) -> None:
        run.trial.report(value, step)
        run.last_step, run.last_value = step, value

    def _on_prune(self, run: TrialRun, request: int) -> None:
        """``should_prune()`` was called: decide after this batch, on every report that came before it."""
        run.prune_request = request
        self._to_decide.add(run.number)

    def _decide(self) -> None:
        """Answer the prune questions of this message batch. The pruner runs only when a trial asks, as in
        Optuna (SuccessiveHalving and Hyperband record their rungs when they are asked). A pruner that raises
        fails the trial it decided for, and only that one (its error stops the study unless ``catch`` names
        it), as in Optuna, where ``should_prune`` raises it inside the objective."""
        failed: list[tuple[TrialRun, events.ErrorInfo]] = []
        for number in self._to_decide:
            run = self.running.get(number)
            if run is None or run.finished or run.conn is None:
                continue
            if self._movable.scheduler is not None and run.prune_enabled:  # the scheduler decides, not the pruner
                try:
                    prune, action = self._movable.decide(run)
                except Exception as exc:  # the scheduler's error fails this trial, never the loop
                    logger.exception("daskopt: trial %d: the scheduler failed", run.number)
                    run.conn.send([events.CANCEL, "the scheduler failed"])
                    self._tell(run, TrialState.FAIL, reason=f"scheduler {self._movable.scheduler.name}: {exc}")
                    continue
                if action is not None:
                    run.conn.send([events.DECISION, run.prune_request, prune, action])
                    continue
            else:
                try:
                    prune = run.prune_enabled and self._pruning.should_prune(run.trial)
                except Exception as exc:  # raised in the objective's should_prune in Optuna: the trial fails
                    failed.append((run, events.error_info(exc)))
                    continue
                if not prune and self._elastic is not None and self._elastic.resize_due(run):
                    run.conn.send([events.DECISION, run.prune_request, True, events.SUSPEND])  # to restart resized
                    continue
            run.conn.send([events.DECISION, run.prune_request, prune])
        self._to_decide.clear()
        for run, error in failed:  # after the answers: a stop may end the other trials
            logger.warning("daskopt: trial %d: the pruner raised %s", run.number, error["message"])
            if run.conn is not None:
                run.conn.send([events.CANCEL, f"the pruner raised {error['message']}"])
            self._raised(run, error)
        if failed:
            self._fill()  # their slots are free

    def _on_attr(self, run: TrialRun, key: str, value: Any, kind: int) -> None:
        if kind == events.CONSTRAINT:
            run.trial.set_constraint(key, value)
        elif kind == events.SYSTEM_ATTR:
            optuna_access.set_trial_system_attr(self.study, optuna_access.trial_id(run.trial), key, value)
        else:
            run.trial.set_user_attr(key, value)

    def _on_finish(self, run: TrialRun, state: str, values: list[float] | None, error: Any) -> None:
        if state == events.SUSPENDED and self._elastic is not None and self._elastic.resizing.get(run.number):
            self._restart(run)
        elif state == events.SUSPENDED and run.checkpoint_step is not None:
            self._suspend(run)
        elif state == events.PRUNED and self._movable.clone(run) is not None:
            self._exploit(run)
        elif state == events.FAIL and error is not None and REPLICA_LOST in error["mro"]:
            self._lost(run, error["message"])  # a replica's worker died: retried from its checkpoint
            return
        elif state == events.FAIL and error is not None:
            self._raised(run, error)
        else:
            self._fail_fast.succeeded()
            self._tell(run, STATES[state], values=values)
        self._fill()

    def _raised(self, run: TrialRun, error: events.ErrorInfo) -> None:
        """The trial raised ``error`` (in its objective, or from ``should_prune`` when the pruner raised): FAIL,
        and the study stops with the error unless ``catch`` names it, as ``Study.optimize`` does."""
        self._tell(run, TrialState.FAIL, reason=error["message"], traceback=error["traceback"])
        if not events.caught(error, self.config.catch):
            self._error = ObjectiveError(run.number, error["type"], error["message"], error["traceback"])
            self._stop(f"trial {run.number} raised {error['message']}", running=FAIL_RUNNING)
        elif self._fail_fast.failed(error["message"]) and self._error is None:
            message = f"{error['message']} (and so did the {self._fail_fast.count - 1} trials before it: fail_fast)"
            self._error = ObjectiveError(run.number, error["type"], message, error["traceback"])
            self._stop(f"the first {self._fail_fast.count} trials all failed the same way", running=FAIL_RUNNING)

    # ------------------------------------------------------------------------- the tell step
    def _tell(
        self,
        run: TrialRun,
        state: TrialState,
        values: list[float] | None = None,
        reason: str | None = None,
        traceback: str | None = None,
        retry: bool = False,
    ) -> None:
        """Record the trial's outcome in the study (the only ``tell`` call), then run the callbacks."""
        if run.finished:
            return
        run.finished = True
        self.running.pop(run.number, None)
        if self._elastic is not None:
            self._elastic.ended(run, replaced=retry)
        if state != TrialState.FAIL and run.conn is not None:  # ran to its end (or pruned): a duration
            took = time.monotonic() - run.started
            self._trial_s = took if self._trial_s is None else self._trial_s + 0.2 * (took - self._trial_s)
        entry = self.timeline.get(run.timeline_key) if run.timeline_key is not None else None
        if entry is not None:
            entry.ended, entry.state = time.time(), state.name
        if run.conn is not None and isinstance(run.conn.state, TaskState):
            run.conn.state.run = None
        try:
            if reason:
                run.trial.set_user_attr(attributes.FAIL_REASON, reason)
            if traceback:
                run.trial.set_user_attr(attributes.TRACEBACK, traceback)
            frozen = optuna_access.tell(self.study, run.trial, values, state)
        except Exception as exc:  # the storage failed
            self._call_failed(f"recording trial {run.number} as {state.name}", exc)
            return
        self._pruning.finished.add(frozen)
        self._pruning.forget(run.number)
        self._movable.finished(frozen, replaced=retry)
        self.counts.record(frozen, self.study, retried=retry)
        self._progress.update(self.counts, len(self.running))
        self._study_logger.trial_finished(self.study, frozen, run.worker)
        for callback in self.config.callbacks:  # each its own copy, as in Optuna's optimize
            try:
                callback(self.study, copy.deepcopy(frozen))
            except Exception as exc:  # the trial stays as it was told
                self._call_failed("a callback", exc)
                break
        if optuna_access.stop_requested(self.study) and self._stopping is None:
            self._stop("study.stop() was called")

    def _call_failed(self, what: str, exc: Exception) -> None:
        """``what`` raised ``exc`` in this process (a callback, the storage): the call stops and ``optimize``
        raises ``exc`` itself, as ``Study.optimize`` does; the running trials end as on an objective's
        uncaught error."""
        message = f"{what} failed: {type(exc).__name__}: {exc}"
        logger.error("daskopt: %s", message)
        if self._error is None:
            self._error = exc
        if self._stopping is None:
            self._stop(message, running=FAIL_RUNNING)

    def _end_unstarted(self, run: TrialRun) -> None:
        """A trial asked but never started, on a stop that ends trials: enqueued again (not counted) when the
        study is to go on later (Ctrl-C, a hard timeout), else FAIL like the running ones."""
        if self._requeue_cut:
            self._requeue(run, f"interrupted before it started: {self._stopping}", attributes.attempt(run.user_attrs))
        else:
            self._tell(run, TrialState.FAIL, reason=f"cancelled before it started: {self._stopping}")

    def _lost(self, run: TrialRun, why: str) -> None:
        """A trial's task vanished (worker killed, connection dropped, heartbeat silent)."""
        worker = f" on {run.worker}" if run.worker else ""
        reason = f"trial lost{worker}: {why}"
        attempt = attributes.attempt(run.user_attrs)
        if self._stopping is None and attempt < self.config.failures.max_retries:
            self._requeue(run, reason, attempt + 1)
            logger.warning("daskopt: %s; retrying with the same parameters (attempt %d)", reason, attempt + 1)
        else:
            self._tell(run, TrialState.FAIL, reason=reason)
        self._fill()

    def _requeue(self, run: TrialRun, reason: str, attempt: int) -> None:
        """FAIL ``run`` (not counted as an outcome) and enqueue its parameters for a new attempt, which starts
        from its newest checkpoint."""
        self._tell(run, TrialState.FAIL, reason=reason, retry=True)
        attributes.requeue(
            self.study,
            run.number,
            run.trial.params,
            run.user_attrs,
            next_attempt=attempt,
            restore_step=run.checkpoint_step,
        )

    # ------------------------------------------------------------------------ paused trials
    def _restart(self, run: TrialRun) -> None:
        """An elastic trial stopped at its checkpoint to change size: at once on a task of the new size."""
        assert self._elastic is not None
        self._leave_task(run, "RESIZED")
        self._elastic.end_stretch(run)
        replicas = self._elastic.restarting(run)
        assert replicas is not None
        self._start_sized(run, replicas)

    def _leave_task(self, run: TrialRun, state: str) -> None:
        """``run``'s objective stopped without an outcome: its slot is free, its timeline stretch ends."""
        self.running.pop(run.number, None)
        entry = self.timeline.get(run.timeline_key) if run.timeline_key is not None else None
        if entry is not None:
            entry.ended, entry.state = time.time(), state
        if run.conn is not None and isinstance(run.conn.state, TaskState):
            run.conn.state.run = None
        run.conn = None

    def _suspend(self, run: TrialRun) -> None:
        """A scheduler paused ``run`` and its objective stopped: the slot is free, the trial stays RUNNING."""
        self._leave_task(run, "SUSPENDED")
        self._movable.suspend(run)
        self._progress.update(self.counts, len(self.running))

    def _exploit(self, run: TrialRun) -> None:
        """PBT: ``run`` ends (PRUNED, no outcome) and goes on as a new trial from a better one's checkpoint."""
        clone = self._movable.clone(run)
        assert clone is not None
        self._tell(run, TrialState.PRUNED, retry=True)
        params, attrs = clone
        self.study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)

    def _end_paused(self, run: TrialRun) -> None:
        """The call ends with ``run`` paused: PRUNED at its last report, as a trial a pruner stopped."""
        self._tell(run, TrialState.PRUNED)

    def _requeue_paused(self, run: TrialRun) -> None:
        """The call is interrupted with ``run`` paused: enqueued again, to stay paused in the next call."""
        self._requeue(run, f"interrupted while paused: {self._stopping}", attributes.attempt(run.user_attrs))

    def _on_closed(self, conn: Connection) -> None:
        if conn in self._behind:  # after the messages it sent before it closed
            self._queue(conn, None)
        else:
            self._closed_now(conn)

    def _closed_now(self, conn: Connection) -> None:
        """A task's connection ended: a trial it still ran is lost (process killed, network gone)."""
        state = conn.state
        if isinstance(state, TaskState) and state.run is not None and not state.run.finished:
            self._lost(state.run, f"its connection closed before it finished (pid {state.pid})")
