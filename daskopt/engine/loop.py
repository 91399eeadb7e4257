"""The engine loop: the one place that asks, tells and prunes.

It runs on an asyncio event loop in the client process and reacts to three kinds of events:
messages from trial tasks (over :mod:`~daskopt.engine.channel`), Dask task completions (via
:mod:`~daskopt.engine.tasks`) and a periodic tick (:mod:`~daskopt.engine.ticks`: timeouts, heartbeats).
After each event it calls :meth:`Engine._fill`, which asks for new trials while slots are free and keeps
tasks queued ahead.

Sampling (``study.ask`` and define-by-run suggestions) runs inline while it is cheap and on sampler
threads once it is not (:mod:`~daskopt.engine.sampling`), so a slow sampler never delays the reports and
prune decisions of running trials (DESIGN principle 3); define-by-run parameters are handled by
:mod:`~daskopt.engine.define_by_run`, prune decisions by :mod:`~daskopt.engine.pruning`, what trials send
by :mod:`~daskopt.engine.messages` (a base class), trials a scheduler pauses or clones by
:mod:`~daskopt.engine.movable`. Optuna supports ask/tell from several threads on one study (``n_jobs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import optuna
from distributed import Client, Future
from optuna.trial import TrialState

from daskopt import attributes
from daskopt.engine import waiting
from daskopt.engine.assignments import Assignments
from daskopt.engine.channel import Connection
from daskopt.engine.config import EngineConfig
from daskopt.engine.define_by_run import DefineByRun, joint_sample
from daskopt.engine.elastic import ElasticTrials
from daskopt.engine.messages import FAIL_RUNNING, TrialMessages
from daskopt.engine.movable import Movable
from daskopt.engine.progress import Progress
from daskopt.engine.pruning import PruneDecider
from daskopt.engine.sampling import SamplingGate, ask_ahead
from daskopt.engine.state import AskFailed, Counts, FailFast, TaskState, TimelineEntry, TrialRun
from daskopt.engine.tasks import TaskPool
from daskopt.engine.ticks import LET_FINISH, REQUEUE, TICK_S, Ticks
from daskopt.engine.trial_channel import TrialChannel
from daskopt.engine.watchdog import Watchdog
from daskopt.errors import ChannelUnreachable
from daskopt.optuna_access import fail_stored_trial, set_in_optimize, suggest_declared, trial_left_by_failed_ask
from daskopt.protocol import events
from daskopt.tracking.base import StudyLogger
from daskopt.trial.task import UNREACHABLE

logger = logging.getLogger("daskopt")

# Tasks kept submitted per slot. Idle tasks hold no trial (they ask for one when they start): this only hides
# Dask's dispatch latency (with 1 per slot the cluster waits for the scheduler between trials).
LOOKAHEAD = 4
SHUTDOWN_GRACE_S = 5.0  # longest wait at the end of a call for cancelled objectives to stop
INTERRUPTED = "Ctrl-C"  # the stop reason of Ctrl-C (the engine's task cancelled)


class Engine(TrialMessages, Ticks):
    """Runs one ``optimize()`` call. Create, then ``await run()`` once."""

    def __init__(self, study: optuna.Study, objective: Any, client: Client, config: EngineConfig) -> None:
        self.study = study
        self.client = client
        self.config = config
        self._token = secrets.token_hex(16)
        self._n_objectives = len(study.directions)
        self._assignments = Assignments(objective, study, config)
        self.counts = Counts()
        # every trial this call assigned, in assignment order; a resumed trial's later stretches as (number, k)
        self.timeline: dict[int | tuple[int, int], TimelineEntry] = {}
        self.started_at = time.time()
        self.running: dict[int, TrialRun] = {}
        self._ready: deque[TrialRun] = deque()
        self._waiting: deque[Connection] = deque()
        self._later: deque[tuple[Connection, list[list[Any]] | None]] = deque()  # trial ends, task starts
        self._behind: dict[Connection, int] = {}  # connections with messages in _later, and how many
        self._drain_due = False
        self._asking = 0
        self._stopping: str | None = None
        self._hard_stop = False  # a stop that ended running trials (else they finish, as in Optuna)
        self._requeue_cut = False  # ... and enqueued them again for a later call
        # raised from optimize: ObjectiveError, SchedulerLost, ChannelUnreachable, or a callback's own exception
        self._error: Exception | None = None
        self._to_decide: set[int] = set()
        self._warned: set[str] = set()  # WARN keys already shown in this call
        self._greeted: set[int] = set()  # tasks that reached this loop (the others' results say why not)
        self._fail_fast = FailFast(config.failures.fail_fast)
        self._pruning = PruneDecider(study)
        self._filling = False
        self._watchdog = Watchdog(client, config, TICK_S)
        self._refill = False
        self._sampling = SamplingGate()  # asks
        self._trial_s: float | None = None  # moving average of finished trials' durations
        self._define_by_run = DefineByRun()
        self._channel = TrialChannel(
            client, config.channel, self._token, self._on_messages, self._on_closed, config.channel_host
        )
        self._progress = Progress(config.show_progress, config.n_trials)
        # Optuna counts ``timeout`` from the optimize() call, so the cluster's start and the setup count too
        started = time.monotonic() if config.called_at is None else config.called_at
        self._deadline = started + config.timeout.seconds if config.timeout else None
        self._study_logger = config.study_logger or StudyLogger()
        self._movable = Movable(study, config.scheduler)  # paused trials, and the scheduler deciding on them
        self._elastic = ElasticTrials(config.elastic, config.elastic_slots) if config.elastic else None

    # ------------------------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = loop.create_future()
        try:
            choice = await self._channel.open()
        except BaseException:
            await self._channel.close()
            raise
        self.channel_address = choice.address
        self.relay_transport = self._channel.relay.transport if choice.route and self._channel.relay else None
        logger.info("daskopt: trial channel: %s", choice.line)
        if self.config.show_progress:
            print(f"daskopt: trial channel: {choice.line}", file=sys.stderr, flush=True)
        self._pool = TaskPool(
            self.client,
            loop,
            (choice.address, self._token, choice.route),
            self._assignments.digest,
            self._on_tasks_done,
            self.config.resources,
            self.config.task_options,
        )
        if self._elastic is not None:
            self._elastic.attach(self._pool, self.client)
        ticker = asyncio.ensure_future(self._tick_forever())
        self._progress.start()
        services = [start(self) for start in self.config.services]
        set_in_optimize(self.study, True)
        waiting.install(self.study)
        try:
            self._study_logger.study_start(self.study)
            self._movable.start(self.config.n_concurrent, self.config.n_trials)
            self._fill()
            await self._done
        except asyncio.CancelledError:
            self._stop(INTERRUPTED, running=REQUEUE)
            raise
        finally:
            ticker.cancel()
            self._shutdown()
            await self._watchdog.reap(min(self.config.failures.hung_grace_s, SHUTDOWN_GRACE_S))
            self._study_logger.study_end(self.study)
            for service in services:
                await service.close()
            await self._channel.close()
            self._sampling.shutdown()
            self._define_by_run.shutdown()
            self._progress.stop(self.counts, len(self.running))
            waiting.uninstall(self.study)
            set_in_optimize(self.study, False)
        if self._error is not None:
            raise self._error

    def _shutdown(self) -> None:
        """End everything still open: no trial may stay RUNNING after ``optimize`` returns."""
        self._drain_all()
        self._stop(self._stopping or "study finished", running=FAIL_RUNNING)
        while self._waiting:
            self._waiting.popleft().send([events.STOP])
        self._pool.cancel_all()
        if self._elastic is not None:
            self._elastic.close()

    def _stop(self, reason: str, running: str = LET_FINISH) -> None:
        """Ask no more trials. ``running``: what becomes of the trials already asked. ``LET_FINISH`` lets them
        run to their end (Optuna's ``timeout`` and ``study.stop()``: every trial asked is run);
        ``REQUEUE`` stops them and enqueues their parameters again (Ctrl-C, a hard timeout); ``FAIL_RUNNING``
        stops them as failed (the call itself failed: an uncaught error, a lost scheduler)."""
        if self._stopping is None:
            self._stopping = reason
            logger.info("daskopt: stopping: %s", reason)
        if running != LET_FINISH:
            self._drain_all()  # trials whose end is queued ended: told as they did, not cancelled
            self._hard_stop = True
            self._requeue_cut = running == REQUEUE
            self._cancel_running(reason, requeue=self._requeue_cut)
            while self._ready:
                self._end_unstarted(self._ready.popleft())
            for run, _ in list(self._elastic.starting.values()) if self._elastic else ():
                self._end_unstarted(run)
            self._movable.end(self._requeue_cut, self._end_paused, self._requeue_paused)
        self._fill()

    def _cancel_running(self, reason: str, requeue: bool) -> None:
        """Tell running trials to stop. Re-enqueued ones are FAIL "interrupted" but not counted, so the
        next run of the study runs them first, as after a killed driver."""
        for run in list(self.running.values()):
            if run.conn is not None and not run.conn.closed:
                run.conn.send([events.CANCEL, reason])
                self._watchdog.watch(run.conn, self.config.failures.hung_grace_s)
            if requeue:
                self._requeue(run, f"interrupted: {reason}", attributes.attempt(run.user_attrs))
            else:
                self._tell(run, TrialState.FAIL, reason=f"cancelled: {reason}")

    # ------------------------------------------------------------------------------ the fill step
    def _unstarted(self) -> float:
        """Trials this call may still start (asked-but-unassigned included)."""
        if self._hard_stop:
            return 0  # asks still out are enqueued again as they return
        if self._stopping is not None:
            return self._asking + len(self._ready)  # asked trials still run
        if self.config.n_trials is None:
            return math.inf
        return self.config.n_trials - self.counts.finished - self._active() - len(self._movable.suspended)

    def _active(self) -> int:
        """Trials running, and elastic trials between two tasks (starting, or restarting at a new size)."""
        return len(self.running) + (self._elastic.in_flight if self._elastic else 0)

    def _fill(self) -> None:
        """Ask while a slot is free, hand ready trials to waiting tasks, keep tasks queued ahead.

        Re-entrant calls (an inline ask finishing inside the loop below) only request another pass.
        """
        if self._filling:
            self._refill = True
            return
        self._filling = True
        try:
            self._refill = True
            while self._refill:
                self._refill = False
                self._fill_once()
        finally:
            self._filling = False

    @contextlib.contextmanager
    def _one_fill(self) -> Iterator[None]:
        """Calls to :meth:`_fill` inside only ask for one pass, made at the end (many trials ending in one
        batch: one pass asks for all their slots)."""
        if self._filling:
            yield
            return
        self._filling, self._refill = True, False
        try:
            yield
        finally:
            self._filling = False
        if self._refill:
            self._fill()

    def _fill_once(self) -> None:
        if self._deadline is not None and self._stopping is None:
            self._check_deadline(time.monotonic())  # before every ask, as Optuna checks before every trial
        n = self.config.n_concurrent
        # a slow sampler (measured) gets trials asked ahead, so a freed slot does not wait a whole ask
        ahead = 0
        if self.config.ask_ahead and n > 1 and not self._sampling.inline:
            ahead = ask_ahead(n, self._sampling.average_s, self._trial_s)
        if self._stopping is None and self._movable.suspended:  # a promoted paused trial before a new one
            # asked-ahead new trials do not hold a free slot back from a paused trial the scheduler resumes
            resuming = sum(1 for r in self._ready if r.segments or r.restore)
            while len(self.running) + resuming < n and (run := self._movable.resume_next()):
                resuming += 1
                if run.action is None:
                    self._ready.appendleft(run)
                else:  # ends, and goes on as a clone: asked below
                    self._exploit(run)
        if self._stopping is None:
            while (
                self._asking + len(self._ready) < self._unstarted()
                and self._active() + self._asking + len(self._ready) < n + ahead
            ):
                self._start_ask()
        unstarted = self._unstarted()
        if self._elastic is not None:  # each trial gets a task of its own size; none are kept ahead
            self._elastic.place(self._ready, self.running, self._start_sized, self._asking)
            while self._waiting:
                self._waiting.popleft().send([events.STOP])
        else:
            self._assign_ready()
            if unstarted <= 0:
                while self._waiting:
                    self._waiting.popleft().send([events.STOP])
            desired = min(LOOKAHEAD * n, len(self.running) + unstarted)
            if desired > self._pool.outstanding:
                self._pool.submit(int(desired - self._pool.outstanding))
        if not self._active() and unstarted <= 0 and not self._asking and not self._done.done():
            self._done.set_result(None)

    def _start_sized(self, run: TrialRun, replicas: int) -> None:
        """An elastic trial gets a task holding ``replicas`` slots (split over workers when one has no room);
        it is assigned when the task says HELLO."""
        assert self._elastic is not None
        self._elastic.start(run, replicas)

    def _start_ask(self) -> None:
        self._asking += 1
        self._sampling.run(self._ask, self._asked)

    def _ask(self) -> TrialRun:
        """On the sampler thread: ask, and read what the task will need while we are off the loop."""
        trial = self.study.ask()  # an error here (no trial yet) is raised from optimize, as in Optuna
        try:
            if self.config.search_space:
                suggest_declared(trial, self.config.search_space)
            joint = joint_sample(trial)  # for define-by-run parameters beyond a declared space, if any
            user_attrs = trial.user_attrs
            run = TrialRun(trial=trial, params=dict(trial.params), user_attrs=user_attrs, joint=joint)
            run.prune_enabled = attributes.REPEAT not in user_attrs and self._n_objectives == 1
            self._movable.prepare(run)  # a trial going on from another starts from its checkpoint
        except Exception as exc:  # the trial exists: it fails, never stays RUNNING
            raise AskFailed(trial, exc) from exc
        return run

    def _asked(self, run: TrialRun | None, error: BaseException | None) -> None:
        self._asking -= 1
        if isinstance(error, AskFailed):
            failed, info = (
                TrialRun(trial=error.trial, params=dict(error.trial.params), user_attrs={}),
                events.error_info(error.error),
            )
            logger.warning("daskopt: trial %d: the sampler failed: %s", failed.number, info["message"])
            self._raised(failed, info)  # `catch` decides whether the study goes on
            self._fill()
            return
        if run is None:  # study.ask itself raised: the call stops and raises it, as Optuna's optimize does
            assert error is not None
            left = trial_left_by_failed_ask(error)
            if left is not None:  # a trial it had created: FAIL, never left RUNNING
                info = events.error_info(error)
                reasons = {attributes.FAIL_REASON: info["message"], attributes.TRACEBACK: info["traceback"]}
                fail_stored_trial(self.study, left, reasons)
            if self._error is None and isinstance(error, Exception):
                self._error = error
            self._error_stop(f"the sampler failed: {type(error).__name__}: {error}")
            return
        if self._hard_stop:
            self._end_unstarted(run)
            return
        if self._movable.adopt(run):  # a paused trial of an earlier call: it waits to be resumed
            self._fill()
            return
        self._ready.append(run)
        self._fill()

    def _error_stop(self, message: str) -> None:
        logger.error("daskopt: %s", message)
        self._stop(message, running=FAIL_RUNNING)

    def _assign_ready(self) -> None:
        """Hand asked trials to waiting tasks, never more than ``n_concurrent`` running at once (a worker
        may run more tasks at once than the trials it may hold: a GPU shared by k trials runs out of
        memory at k + 1)."""
        while self._ready and self._waiting and len(self.running) < self.config.n_concurrent:
            conn = self._waiting.popleft()
            if conn.closed:
                continue
            self._assign(conn, self._ready.popleft())

    def _assign(self, conn: Connection, run: TrialRun, replicas: int | None = None) -> None:
        state: TaskState = conn.state
        state.run = run
        run.conn = conn
        run.started = run.last_seen = time.monotonic()
        self.running[run.number] = run
        run.timeline_key = run.number if run.segments == 0 else (run.number, run.segments)
        run.segments += 1
        self.timeline[run.timeline_key] = TimelineEntry(run.number, state.worker, time.time())
        placement = None
        if self._elastic is not None and replicas is not None:
            placement = self._elastic.placement(run, replicas)
            self._elastic.began(run, replicas, state.worker)
        assignment = self._assignments.for_run(run, state.has_objective, placement)
        conn.send([events.ASSIGN, assignment.to_wire()])
        self._study_logger.trial_started(self.study, run.number, run.params, run.worker)

    # ----------------------------------------------------------------------- connection / task
    def _on_tasks_done(self, done: list[tuple[int, Future]]) -> None:
        with self._one_fill():
            for task_id, future in done:
                self._on_task_done(task_id, future)

    def _on_task_done(self, task_id: int, future: Future) -> None:
        if self._elastic is not None and self._elastic.part_done(task_id, future):  # a part of a trial's replicas
            return
        greeted = task_id in self._greeted
        self._greeted.discard(task_id)
        unstarted = self._elastic.task_lost(task_id) if self._elastic else None
        if unstarted is not None:  # its trial waits for another task (a restart keeps its checkpoint)
            (self._end_unstarted if self._hard_stop else self._ready.appendleft)(unstarted)
        if future.status == "error" and self._stopping is None:
            logger.debug("daskopt: task %d ended with %s", task_id, future.exception())
        elif future.status == "finished" and not greeted and self._stopping is None:
            asyncio.ensure_future(self._why_unreached(future))  # it never reached us: its result says why
        if not self._done.done():
            self._fill()

    async def _why_unreached(self, future: Future) -> None:
        """A task that ended without a HELLO (a worker that joined after the probe, with no path to this
        loop): its result, fetched off the loop thread (a gather from the worker), is the call's error."""
        try:
            result = await asyncio.to_thread(future.result, 30)
        except Exception:  # the worker went away with it: nothing to say
            return
        if isinstance(result, str) and result.startswith(UNREACHABLE) and self._stopping is None:
            self._error = ChannelUnreachable(self._channel.unreachable(result.removeprefix(UNREACHABLE)))
            self._error_stop(str(self._error))
