"""A one-line live progress display on a terminal; silent when output is not a terminal."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from daskopt.engine.state import Counts


class Progress:
    """Shows done/running/pruned/failed and the best value, refreshed at most ``max_hz`` times a second."""

    def __init__(self, enabled: bool, total: int | None, max_hz: float = 4.0) -> None:
        self._console = Console(stderr=True)
        self._enabled = enabled and self._console.is_terminal
        self._total = total
        self._period = 1.0 / max_hz
        self._last = 0.0
        self._live: Live | None = None
        self._started = time.monotonic()

    def start(self) -> None:
        if self._enabled:
            self._live = Live(Text(""), console=self._console, auto_refresh=False, transient=False)
            self._live.start()

    def update(self, counts: Counts, running: int, force: bool = False) -> None:
        if self._live is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._period:
            return
        self._last = now
        self._live.update(Text(self.line(counts, running, now - self._started)), refresh=True)

    def line(self, counts: Counts, running: int, elapsed: float) -> str:
        total = f"/{self._total}" if self._total else ""
        best = f"  best {counts.best:.6g}" if counts.best is not None else ""
        retried = f"  retried {counts.retried}" if counts.retried else ""
        return (
            f"daskopt: {counts.finished}{total} done  {running} running  {counts.complete} complete  "
            f"{counts.pruned} pruned  {counts.failed} failed{retried}{best}  [{elapsed:.0f}s]"
        )

    def stop(self, counts: Counts, running: int) -> None:
        if self._live is not None:
            self.update(counts, running, force=True)
            self._live.stop()
            self._live = None
