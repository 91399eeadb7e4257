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
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from daskopt.engine.state import JointValue

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


def suggest_in_loop(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """A define-by-run suggestion made on the loop's ``optuna.Trial`` through its public API."""
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"unsupported distribution for {name!r}: {distribution!r}")


def joint_sample(trial: optuna.Trial) -> dict[str, JointValue]:
    """The trial's joint (relative) sample, drawn now, as values a define-by-run suggest may take locally.

    Optuna draws it lazily at the first suggest; calling this while asking (on the sampler thread) takes
    that cost off the trial's start, and shipping the values with the assignment saves one round trip
    per parameter. Left out, so that the loop's own ``suggest_*`` would take another branch than the
    joint value: enqueued (fixed) parameters, single-valued distributions, and parameters already set
    (a declared space). A trial whose fixed parameters cannot be read (another Optuna version) ships
    nothing, and every suggest asks the loop as before.
    """
    params = trial.relative_params
    fixed = getattr(trial, "_fixed_params", None)
    space = trial.relative_search_space or {}
    if not params or fixed is None:
        return {}
    joint: dict[str, JointValue] = {}
    taken = trial.params  # a declared space's values, already set by ask
    for name, value in params.items():
        distribution = space.get(name)
        if distribution is None or name in fixed or name in taken or distribution.single():
            continue
        plain = distribution.to_external_repr(distribution.to_internal_repr(value))  # no numpy types on the wire
        joint[name] = JointValue(distribution, distribution_to_json(distribution), plain)
    return joint
