"""The engine loop's periodic tick: deadlines, trial timeouts, silent trials and a lost scheduler.

A part of :class:`daskopt.engine.loop.Engine` (a base class, as :mod:`daskopt.engine.messages` is), kept
apart so each file holds one concern; the attributes and methods it uses from the rest of the engine are
declared below for type checking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from daskopt.engine.messages import FAIL_RUNNING
from daskopt.engine.progress import Progress
from daskopt.engine.state import Counts, TrialRun
from daskopt.engine.watchdog import Watchdog
from daskopt.protocol import events

if TYPE_CHECKING:
    from daskopt.engine.config import EngineConfig

logger = logging.getLogger("daskopt")

TICK_S = 0.25
# what a stop does with the trials already asked (Engine._stop); FAIL_RUNNING is the third
LET_FINISH, REQUEUE = "finish", "requeue"


class Ticks:
    """The tick of :class:`~daskopt.engine.loop.Engine`."""

    if TYPE_CHECKING:  # the engine's own, used here
        config: EngineConfig
        running: dict[int, TrialRun]
        counts: Counts
        _error: Exception | None
        _stopping: str | None
        _deadline: float | None
        _watchdog: Watchdog
        _progress: Progress

        def _fill(self) -> None: ...
        def _stop(self, reason: str, running: str = ...) -> None: ...
        def _lost(self, run: TrialRun, why: str) -> None: ...
        def _tell(
            self,
            run: TrialRun,
            state: TrialState,
            values: list[float] | None = None,
            reason: str | None = None,
            traceback: str | None = None,
            retry: bool = False,
        ) -> None: ...

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        lost = self._watchdog.scheduler_lost(now)
        if lost is not None and self._error is None:
            self._error = lost
            self._stop("the Dask scheduler is gone", running=FAIL_RUNNING)
        self._check_deadline(now)
        timed_out, silent = self._watchdog.overdue(self.running.values(), now)
        for run in timed_out:
            self._time_out(run)
        for run in silent:
            if not run.finished:  # a restart for an earlier one may have ended it
                self._silent(run)
        self._watchdog.check(now)
        self._progress.update(self.counts, len(self.running))
        self._fill()

    def _check_deadline(self, now: float) -> None:
        """Past ``timeout``: stop asking (and, for a hard one, stop the running trials). Checked at every tick
        and before every fill, so no trial is asked after the deadline, as in Optuna (which checks before
        each trial); a tick alone let trials start up to a tick late."""
        if self._deadline is not None and now >= self._deadline and self._stopping is None:
            timeout = self.config.timeout
            assert timeout is not None
            self._stop(f"timeout of {timeout.seconds:g}s reached", running=REQUEUE if timeout.hard else LET_FINISH)

    def _silent(self, run: TrialRun) -> None:
        """A trial unheard of for ``heartbeat_timeout``: lost. Its worker (frozen, partitioned) is restarted
        when possible, since the Dask tasks it holds would otherwise keep counting as queued work."""
        worker = run.worker
        if run.conn is not None:
            run.conn.close()
        self._lost(run, f"no heartbeat for {self.config.failures.heartbeat_timeout:g}s")
        if worker and worker not in self._watchdog.restarting:
            logger.warning("daskopt: worker %s went silent; restarting it", worker)
            self._watchdog.restart(worker)

    def _time_out(self, run: TrialRun) -> None:
        """FAIL an overrunning trial and tell it to stop; if it ignores that, its worker is restarted."""
        if run.conn is not None and not run.conn.closed:
            run.conn.send([events.CANCEL, "trial_timeout"])
            self._watchdog.watch(run.conn, self.config.failures.hung_grace_s)
        self._tell(run, TrialState.FAIL, reason=f"trial_timeout of {self.config.failures.trial_timeout:g}s exceeded")
