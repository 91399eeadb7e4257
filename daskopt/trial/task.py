"""The function Dask runs for a trial: connect to the loop, take a trial, run the objective, report back.

Tasks are *lazy*: a task carries no parameters, only the loop's address. It asks for its trial when it
starts, so the loop can keep tasks queued ahead on the cluster (Dask dispatch needs that to keep slots
fed) without creating trials that are not yet running, and a task that Dask re-runs after a worker died
simply asks again: it can never duplicate a trial.

The objective travels once per worker process, over the channel, and is cached here by digest.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna

from daskopt.protocol import events
from daskopt.protocol.framing import ChannelClosed
from daskopt.shipping import ObjectiveLoadError, load_objective
from daskopt.tracking import TrialEnd, TrialStart, trial_loggers
from daskopt.trial import heartbeat
from daskopt.trial.connection import LoopChannel
from daskopt.trial.handle import TrialHandle
from daskopt.trial.paths import describe, open_channel
from daskopt.trial.result import objective_values

_objectives: dict[str, Callable[..., Any]] = {}
_objectives_lock = threading.Lock()
UNREACHABLE = "unreachable: "  # the start of a task's result when it found no path to the loop


def run_trial_task(address: str | None, token: str, task_id: int, digest: str, route: str | None = None) -> str:
    """Run trials until the loop says stop; returns what happened (the loop reads ``unreachable: ...``).

    ``address`` is the loop's direct channel, ``route`` its relay through the scheduler (either may be
    ``None``): see :func:`daskopt.trial.paths.open_channel`.

    Usually that is one trial. A trial shorter than the assignment's ``chain_below_s`` is followed by
    another on the same task and connection: for such trials Dask's dispatch (~3 ms a task) would
    dominate, while longer trials keep one task each (visible per trial in the Dask dashboard).
    """
    try:
        conn = open_channel(address, route)
    except (OSError, ChannelClosed) as exc:  # the study already ended, or this worker has no path to it
        return f"{UNREACHABLE}{describe(exc)}"
    ran = 0
    beating = False
    try:
        worker, pid = _worker_identity()
        has_objective = digest in _objectives
        while True:
            conn.send([events.HELLO, token, task_id, has_objective, worker, pid])
            message = _next_assignment(conn)
            if message is None:
                break
            assignment = events.Assignment.from_wire(message[1])
            try:
                objective = _load_objective(digest, assignment.objective)
            except ObjectiveLoadError as exc:  # the trial's failure, in the same words on every worker
                conn.send([events.FINISH, events.FAIL, None, events.error_info(exc)])
                break
            has_objective = True
            if not beating:
                heartbeat.start(conn, assignment.heartbeat_s)
                beating = True
            started = time.monotonic()
            try:
                _run_trial(conn, objective, assignment, worker)
            except ChannelClosed:
                raise
            except Exception as exc:  # daskopt's side of the trial broke: the trial fails with the reason
                conn.send([events.FINISH, events.FAIL, None, events.error_info(exc)])
                break
            ran += 1
            if time.monotonic() - started >= assignment.chain_below_s:
                break
    except ChannelClosed:
        return f"ran {ran}, loop gone"
    finally:
        if beating:
            heartbeat.stop(conn)
        conn.close()
    return f"ran {ran}"


def _next_assignment(conn: LoopChannel) -> list[Any] | None:
    """The loop's answer to HELLO: ASSIGN, or ``None`` for STOP. Messages still queued for the previous
    trial of a chaining task (a decision it never asked for, a late cancel) are skipped."""
    while True:
        message = conn.receive()
        if message is None or message[0] == events.STOP:
            return None
        if message[0] == events.ASSIGN:
            return message


def _run_trial(conn: LoopChannel, objective: Callable[..., Any], assignment: events.Assignment, worker: str) -> None:
    """Run one trial between its loggers' start and end. The loggers end before the loop hears the outcome,
    so a trial's W&B run is finished when the loop records the trial (``finish`` takes a few ms offline,
    counted in the trial's time as the study sees it)."""
    try:
        tracker = trial_loggers(assignment.tracking)
        handle = TrialHandle(conn, assignment, tracker)
    except Exception as exc:  # the trial's failure, with its reason, not a lost connection
        conn.send([events.FINISH, events.FAIL, None, events.error_info(exc)])
        return
    finish: list[Any] = [events.FINISH, events.FAIL, None, None]
    started = time.monotonic()
    try:
        tracker.trial_start(TrialStart(assignment.number, handle.params, assignment.user_attrs, worker))
        started = time.monotonic()
        finish = _call_objective(objective, handle, assignment)
    finally:
        error = finish[3]["message"] if finish[3] else None
        duration = time.monotonic() - started
        tracker.trial_end(TrialEnd(assignment.number, finish[1], finish[2], handle.params, duration, worker, error))
    conn.send(finish)


def _call_objective(objective: Callable[..., Any], handle: TrialHandle, assignment: events.Assignment) -> list[Any]:
    try:
        returned = objective(handle)
        values = objective_values(returned, assignment.n_objectives, handle.reported_values, assignment.report_last_n)
    except optuna.TrialPruned:  # pruned, or paused by a scheduler (it resumes from its last checkpoint)
        state = events.SUSPENDED if handle.stop_action == events.SUSPEND else events.PRUNED
        return [events.FINISH, state, None, None]
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # the trial's outcome, not the task's: an
        # objective's sys.exit() or KeyboardInterrupt must not take its worker thread down (and look like a
        # lost trial); being no Exception, they stop the study unless `catch` names them, as in Optuna
        return [events.FINISH, events.FAIL, None, events.error_info(exc)]
    return [events.FINISH, events.COMPLETE, values, None]


def _load_objective(digest: str, payload: bytes | None) -> Callable[..., Any]:
    with _objectives_lock:
        if digest not in _objectives:
            if payload is None:
                raise ChannelClosed("the loop sent no objective for an unknown digest")
            _objectives[digest] = load_objective(payload)
        return _objectives[digest]


def _worker_identity() -> tuple[str, int]:
    try:
        from distributed import get_worker

        return get_worker().address, os.getpid()
    except (ImportError, ValueError):
        return "", os.getpid()
