"""Where sampling runs: inline on the loop while it is cheap, on a sampler thread once it is slow.

A thread hop costs ~0.1-0.3 ms of handoffs and GIL switches per ask or define-by-run suggest, which
dominates when the sampler takes microseconds (random, early TPE). But a slow sampler (GP at hundreds of
trials, TPE at thousands) must never block the loop, or prune answers of running trials wait behind it
(DESIGN principle 3). So every sampling call is timed; while the moving average stays under
``inline_below_s`` calls run inline, above it they go to the single sampler thread. The first calls go to
the thread, so an expensive sampler never blocks the loop even once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class SamplingGate:
    """Runs sampling calls inline or on the sampler thread, by their measured cost."""

    def __init__(self, inline_below_s: float = 0.0005, warmup_calls: int = 3, smoothing: float = 0.2) -> None:
        self._threshold = inline_below_s
        self._warmup = warmup_calls
        self._alpha = smoothing
        self._average: float | None = None
        self._calls = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="daskopt-sampler")

    @property
    def average_s(self) -> float | None:
        """Moving average of a call's duration (``None`` before the first)."""
        return self._average

    @property
    def inline(self) -> bool:
        return self._calls >= self._warmup and self._average is not None and self._average < self._threshold

    def _timed(self, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self._record(time.perf_counter() - start)

    def _record(self, seconds: float) -> None:
        self._calls += 1
        self._average = seconds if self._average is None else self._average + self._alpha * (seconds - self._average)

    def run(self, fn: Callable[[], T], done: Callable[[T | None, BaseException | None], None]) -> None:
        """Call ``fn`` and hand its result (or exception) to ``done`` on the loop thread."""
        if self.inline:
            try:
                result = self._timed(fn)
            except Exception as exc:
                done(None, exc)
                return
            done(result, None)
            return
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._timed, fn)

        def finished(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            done(None, exc) if exc is not None else done(f.result(), None)

        future.add_done_callback(finished)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


SHORT_TRIAL_ASKS = 50  # trials shorter than this many asks count as short: slots free faster than asks come
LONG_TRIAL_ASKS = 1000  # trials longer than this many asks lose under 0.1% waiting for an ask


def ask_ahead(n_slots: int, ask_s: float | None, trial_s: float | None) -> int:
    """Trials to keep asked ahead of the free slots, for a sampler too slow to run inline.

    A trial asked ahead hides one ask from the next freed slot. Short trials free slots in bursts (trials
    of similar length started together end together), and a burst of k frees waits k asks in a row on the
    one sampler thread, so with short trials a quarter of the slots are kept asked ahead (bookkeeping
    benchmark, TPE, 16 slots: 2.9% over the minimum with one ahead, 2.0% with four). Trials of middling
    length keep one. Long trials (and trials of unknown length) get none: an ask costs them under 0.1%,
    while a trial asked ahead would wait RUNNING in the study for a slot, with a start time that is not
    its own, and be sampled without the results that arrive meanwhile.
    """
    if ask_s is None or trial_s is None or trial_s > LONG_TRIAL_ASKS * ask_s:
        return 0
    if trial_s > SHORT_TRIAL_ASKS * ask_s:
        return 1
    return max(1, math.ceil(n_slots / 4))
