"""One heartbeat thread per worker process, beating for every trial connection open in it.

A trial that stays silent for ``heartbeat_timeout`` is declared lost by the loop, so a trial whose objective
computes for minutes without reporting still needs a sign of life. A thread per task did that, but a
worker running 250 trials at once then held 500 threads: the GIL hand-offs and Dask's own profiler (which
walks every thread's stack each 10 ms) cost the workers more CPU than the trials' own messages did
(benchmarks/concurrency.py). One thread keeps a deadline per connection and sleeps until the next one.

A beat never waits for room in a full socket buffer (:meth:`TrialConnection.heartbeat`): a loop that does not
read one connection must not delay the beats of the others.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

from daskopt.trial.connection import LoopChannel

_lock = threading.Lock()
_wake = threading.Condition(_lock)
_due: list[tuple[float, int, LoopChannel]] = []  # (next beat, tie-breaker, connection)
_interval: dict[LoopChannel, float] = {}
_order = itertools.count()
_thread: threading.Thread | None = None


def start(conn: LoopChannel, interval: float) -> None:
    """Beat on ``conn`` every ``interval`` seconds until :func:`stop` (or until it is closed)."""
    global _thread
    with _lock:
        _interval[conn] = interval
        heapq.heappush(_due, (time.monotonic() + interval, next(_order), conn))
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_beat_forever, name="daskopt-heartbeat", daemon=True)
            _thread.start()
        _wake.notify()


def stop(conn: LoopChannel) -> None:
    """No more beats on ``conn`` (its entry leaves the schedule when it comes due)."""
    with _lock:
        _interval.pop(conn, None)


def beating() -> int:
    """Connections this process beats for (tests)."""
    with _lock:
        return len(_interval)


def _beat_forever() -> None:
    while True:
        with _lock:
            while not _due or _due[0][0] > time.monotonic():
                _wake.wait(None if not _due else _due[0][0] - time.monotonic())
            _, _, conn = heapq.heappop(_due)
            interval = _interval.get(conn)
        if interval is None or conn.closed:
            stop(conn)
            continue
        conn.heartbeat()
        with _lock:
            if conn in _interval:
                heapq.heappush(_due, (time.monotonic() + interval, next(_order), conn))
