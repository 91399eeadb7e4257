"""The component contract and the small helpers components share.

A component follows distributed's dashboard contract: a Bokeh data source (``source``), a model to put
on the page (``root``) and ``update(snapshot)``. The page calls ``update`` once per second on the Bokeh
server's event loop, which is the engine's loop: it must be quick, and it must send deltas
(``source.stream`` for new rows, ``source.patch`` for changed ones), never the whole data again, so a
10,000-trial study costs the browser what the last second changed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bokeh.models import ColumnDataSource, LayoutDOM

from daskopt.dashboard.snapshot import Snapshot

STATE_COLORS = {
    "COMPLETE": "#2ca02c",
    "PRUNED": "#a0a0a0",
    "FAIL": "#d62728",
    "RUNNING": "#1f77b4",
    "WAITING": "#c7c7c7",
    "SUSPENDED": "#f0a30a",  # amber: paused by a scheduler, to be resumed (see snapshot.state_name)
    "RESIZED": "#17becf",  # teal: a stretch of an elastic trial that ended to restart at another size
}
PLOT_HEIGHT = 300

# Slow, optional work (parameter importance, scheduler_info) runs here, never on the loop.
_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="daskopt-dashboard")


class Component(ABC):
    """One block of the page. ``update`` is called by the page's periodic callback with the latest deltas;
    the first call carries everything the study holds."""

    source: ColumnDataSource
    root: LayoutDOM

    @abstractmethod
    def update(self, snapshot: Snapshot) -> None: ...


class RowWindow:
    """Row index of a key (a trial number) in a source streamed with ``rollover=limit``.

    Bokeh drops the oldest rows once a rolled-over source holds ``limit`` rows; a patch must then address
    the row where it is now, or skip a row that is gone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._rows: dict[Hashable, int] = {}  # key -> position in the never-dropping sequence
        self._total = 0

    def add(self, key: Hashable) -> None:
        self._rows[key] = self._total
        self._total += 1
        if len(self._rows) > 2 * self.limit:  # forget rolled-out keys, amortized
            first = self._total - self.limit
            self._rows = {k: r for k, r in self._rows.items() if r >= first}

    def index(self, key: Hashable) -> int | None:
        position = self._rows.get(key)
        if position is None:
            return None
        index = position - max(0, self._total - self.limit)
        return index if index >= 0 else None

    def __contains__(self, key: Hashable) -> bool:
        return self.index(key) is not None


class TrialRows:
    """A source with one row per trial for the latest ``limit`` trials: changed trials are patched in place,
    new ones streamed, the oldest rolled over. ``columns[0]`` is the trial number; ``row(trial)`` gives a
    value per column."""

    def __init__(self, columns: tuple[str, ...], row: Callable[[Any], tuple[object, ...]], limit: int) -> None:
        self.columns, self.row, self.limit = columns, row, limit
        self.source = ColumnDataSource({name: [] for name in columns})
        self.window = RowWindow(limit)

    def patch(self, trials: list[Any]) -> list[Any]:
        """Patch the rows of trials already shown; returns the trials that have no row."""
        patches: dict[str, list[tuple[int, Any]]] = {name: [] for name in self.columns[1:]}
        unshown = []
        for trial in trials:
            index = self.window.index(trial.number)
            if index is None:
                unshown.append(trial)
                continue
            for name, value in zip(self.columns[1:], self.row(trial)[1:], strict=True):
                patches[name].append((index, value))
        patches = {name: items for name, items in patches.items() if items}
        if patches:  # before any stream, whose rollover would shift the indices
            self.source.patch(patches)
        return unshown

    def append(self, trials: list[Any]) -> None:
        rows: dict[str, Any] = {name: [] for name in self.columns}
        for trial in trials[-self.limit :]:
            self.window.add(trial.number)
            for name, value in zip(self.columns, self.row(trial), strict=True):
                rows[name].append(value)
        if rows[self.columns[0]]:
            self.source.stream(rows, rollover=self.limit)


class Background:
    """Runs ``fn`` on a helper thread at most every ``interval`` seconds and keeps its latest result."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.result: Any = None
        self.error: BaseException | None = None
        self._future: Future[Any] | None = None
        self._last = -math.inf

    def poll(self, now: float, fn: Callable[[], Any] | None) -> bool:
        """Collect a finished run (True when a new result arrived); start ``fn`` when due and not None."""
        arrived = False
        if self._future is not None and self._future.done():
            try:
                self.result, self.error = self._future.result(), None
            except Exception as exc:  # shown on the page, never raised into the loop
                self.error = exc
            self._future, arrived = None, True
        if fn is not None and self._future is None and now - self._last >= self.interval:
            self._last = now
            self._future = _EXECUTOR.submit(fn)
        return arrived


def fmt(value: float | None, digits: int = 6) -> str:
    """A short number for labels and tables ('' for none)."""
    if value is None:
        return ""
    return f"{value:.{digits}g}"


def values_of(trial: Any) -> list[float] | None:
    """The trial's finite objective values, or None."""
    values = trial.values
    if values is None or not all(math.isfinite(v) for v in values):
        return None
    return list(values)
