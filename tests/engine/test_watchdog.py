"""The loop's own stalls are told apart from silent trials (the clock that credits them)."""

from __future__ import annotations

import pytest

from daskopt.engine.watchdog import LoopClock


def test_on_time_ticks_are_never_away():
    clock = LoopClock(interval_s=0.25, tolerance_s=1.0)
    assert [clock.away(t * 0.25) for t in range(8)] == [0.0] * 8


def test_a_late_tick_reports_the_time_beyond_the_interval():
    clock = LoopClock(interval_s=0.25, tolerance_s=1.0)
    clock.away(10.0)
    assert clock.away(10.0 + 0.25 + 30.0) == pytest.approx(30.0)
    assert clock.away(40.5 + 0.25) == 0.0  # back on time


def test_lateness_within_the_tolerance_is_not_a_stall():
    clock = LoopClock(interval_s=0.25, tolerance_s=1.0)
    clock.away(0.0)
    assert clock.away(1.2) == 0.0  # 0.95 s late
    assert clock.away(1.2 + 0.25 + 1.5) == pytest.approx(1.5)
