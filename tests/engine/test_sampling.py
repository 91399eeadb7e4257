"""Where sampling runs and how far ahead the loop asks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from daskopt.engine import sampling
from daskopt.engine.sampling import SamplingGate, ask_ahead


@pytest.mark.parametrize(
    ("n_slots", "ask_s", "trial_s", "expected"),
    [
        (16, 0.010, 0.25, 4),  # short trials (25 asks long): a quarter of the slots asked ahead
        (8, 0.016, 0.20, 2),
        (1, 0.010, 0.25, 1),
        (16, 0.300, 60.0, 1),  # middling: one ahead
        (16, 0.010, 60.0, 0),  # long trials: none ahead, an ask is < 0.1% of a trial; a trial asked early would wait
        (16, 0.010, None, 0),  # nothing finished yet
        (16, None, 0.25, 0),
    ],
)
def test_ask_ahead(n_slots, ask_s, trial_s, expected):
    assert ask_ahead(n_slots, ask_s, trial_s) == expected


class FakeClock:
    """The gate's ``time``: a sampling call's cost is what it says, not what a busy machine makes of it."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_gate_runs_cheap_calls_inline_and_slow_ones_on_its_thread(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(sampling, "time", clock)

    async def main() -> tuple[list[str], list[str]]:
        gate = SamplingGate(inline_below_s=0.002, warmup_calls=2)
        where: list[str] = []

        async def call(seconds: float) -> None:
            done = asyncio.get_running_loop().create_future()

            def work() -> None:
                clock.now += seconds
                where.append(threading.current_thread().name)

            gate.run(work, lambda result, error: done.set_result(error))
            assert await done is None

        for _ in range(4):
            await call(0.0)
        cheap = list(where)
        where.clear()
        for _ in range(4):
            await call(0.01)
        gate.shutdown()
        return cheap, where

    cheap, slow = asyncio.run(main())
    main_thread = threading.main_thread().name
    assert cheap[:2] != [main_thread] * 2  # the first calls always go to the thread
    assert cheap[2:] == [main_thread] * 2  # then cheap calls run inline
    assert slow[-1].startswith("daskopt-sampler")  # a slow average moves them back to the thread


def test_gate_reports_its_moving_average():
    async def main() -> SamplingGate:
        gate = SamplingGate()
        done = asyncio.get_running_loop().create_future()
        gate.run(lambda: time.sleep(0.02), lambda result, error: done.set_result(error))
        await done
        gate.shutdown()
        return gate

    assert SamplingGate().average_s is None
    assert asyncio.run(main()).average_s >= 0.02
