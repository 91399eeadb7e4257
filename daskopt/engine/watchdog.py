"""Ending what does not end by itself: trials past their time or silent, objectives that ignore their
cancel, a scheduler that is gone; and telling a silent trial from a loop that was not listening.

A Python thread cannot be killed, so an objective that keeps running after the loop told it to stop (a
trial timeout, the end of the call, a silent worker) is ended by restarting its worker process through the
nanny; other trials on that worker are lost, and retried if allowed. Restarts run on a helper thread: the
call blocks for seconds and must not stall the loop. This module finds who is overdue, watches and
restarts; the loop records the outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from distributed import Client

from daskopt.engine.channel import Connection
from daskopt.engine.config import EngineConfig
from daskopt.engine.state import TaskState, TrialRun
from daskopt.errors import SchedulerLost

logger = logging.getLogger("daskopt")


class LoopClock:
    """How long the loop itself was away between two ticks, so its own stall is not blamed on the trials.

    Silence is judged by the loop's clock, but the loop hears a trial only while it runs. After a long
    callback, a paused VM or a suspended laptop, the heartbeats sent meanwhile are still unread in socket
    buffers (or, after a whole-machine pause, not even sent yet: the trials resume at the same instant as
    the loop), and the first tick would find every running trial silent. ``away`` says how late a tick
    is; the loop credits that time to every trial's silence clock (``last_seen``) before judging.
    """

    def __init__(self, interval_s: float, tolerance_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.tolerance_s = tolerance_s
        self._last: float | None = None

    def away(self, now: float) -> float:
        """Seconds since the previous tick beyond the expected interval, when more than the tolerance; else 0."""
        late = 0.0 if self._last is None else now - self._last - self.interval_s
        self._last = now
        return late if late > self.tolerance_s else 0.0


class Watchdog:
    """Finds overdue trials and a lost scheduler; keeps the connections of objectives told to stop, with the
    moment their worker gets restarted if they have not."""

    def __init__(self, client: Client, config: EngineConfig, tick_s: float) -> None:
        self.client = client
        self.config = config
        self.enabled = config.restart_hung_workers
        self._clock = LoopClock(tick_s)
        self._hung: dict[Connection, float] = {}  # connection -> restart deadline (monotonic)
        self.restarting: set[str] = set()  # workers whose restart is under way (asked once, not per trial)
        self._disconnected_since: float | None = None

    def overdue(self, running: Iterable[TrialRun], now: float) -> tuple[list[TrialRun], list[TrialRun]]:
        """Running trials past ``trial_timeout``, and those silent for ``heartbeat_timeout``.

        Called once per tick. A late tick means the loop was not listening: that time is first credited to
        every trial's silence clock and to the grace of objectives told to stop.
        """
        running = list(running)
        away = self._clock.away(now)
        if away:
            logger.info("daskopt: the engine loop was stalled for %.1fs; heartbeat clocks moved on by as much", away)
            for run in running:
                run.last_seen = min(now, run.last_seen + away)
            for conn in self._hung:
                self._hung[conn] += away
        limit, silence = self.config.failures.trial_timeout, self.config.failures.heartbeat_timeout
        timed_out = [run for run in running if limit and now - run.started > limit]
        silent = [run for run in running if run not in timed_out and now - run.last_seen > silence]
        return timed_out, silent

    def watch(self, conn: Connection, grace_s: float) -> None:
        """``conn``'s objective was told to stop; restart its worker if it still runs ``grace_s`` later."""
        if not conn.closed:
            self._hung[conn] = time.monotonic() + grace_s

    def stopped(self, conn: Connection) -> None:
        """``conn``'s objective did stop (it sent FINISH, or asked for its next trial)."""
        self._hung.pop(conn, None)

    def restart(self, *workers: str) -> list[str]:
        """Restart these workers in the background (no-op when disabled or without a scheduler); returns the
        ones asked now (a worker whose restart is already under way is not asked again)."""
        fresh = [worker for worker in workers if worker not in self.restarting]
        if fresh and self.enabled and self.client.status == "running":
            self.restarting.update(fresh)
            asyncio.get_running_loop().run_in_executor(None, self._restart, *fresh)
            return fresh
        return []

    def check(self, now: float) -> None:
        """Restart the workers of watched objectives past their deadline."""
        for conn, deadline in list(self._hung.items()):
            if conn.closed:
                del self._hung[conn]
            elif now >= deadline:
                del self._hung[conn]
                worker = _worker(conn)
                if worker:
                    logger.warning("daskopt: an objective ignored its cancel; restarting worker %s", worker)
                    self.restart(worker)

    async def reap(self, grace_s: float) -> None:
        """At the end of a call: give watched objectives ``grace_s`` to stop, then restart the workers of
        those still running, so none keeps a worker thread busy after ``optimize`` returns."""
        deadline = time.monotonic() + grace_s
        while any(not conn.closed for conn in self._hung) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        workers = sorted({w for conn in self._hung if not conn.closed and (w := _worker(conn))})
        self._hung.clear()
        if workers and self.enabled and self.client.status == "running":
            logger.warning("daskopt: objectives ignored their cancel; restarting worker(s) %s", ", ".join(workers))
            await asyncio.get_running_loop().run_in_executor(None, self._restart, *workers)

    def scheduler_lost(self, now: float) -> SchedulerLost | None:
        """The error to end the call with, once the client has been without its scheduler for
        ``scheduler_grace_s``; else ``None``."""
        if self.client.status == "running":
            self._disconnected_since = None
            return None
        if self._disconnected_since is None:
            self._disconnected_since = now
            logger.warning("daskopt: lost the Dask scheduler (client %s); waiting for it", self.client.status)
        grace = self.config.failures.scheduler_grace_s
        if now - self._disconnected_since <= grace:
            return None
        address = getattr(self.client.scheduler, "address", "?")
        return SchedulerLost(
            f"lost the Dask scheduler at {address} for {grace:g}s; finished trials are stored and running ones "
            "were marked cancelled; run again against a live scheduler to resume"
        )

    def _restart(self, *workers: str) -> None:
        try:
            self.client.restart_workers(list(workers), timeout=60, raise_for_error=False)
        except Exception as exc:  # the worker may be gone already; the trial is recorded either way
            logger.warning("daskopt: could not restart worker(s) %s: %s", ", ".join(workers), exc)
        finally:
            self.restarting.difference_update(workers)


def _worker(conn: Connection) -> str:
    return conn.state.worker if isinstance(conn.state, TaskState) else ""
