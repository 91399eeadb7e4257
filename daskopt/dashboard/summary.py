"""The line on top: counts by state, throughput, ETA, best value, and the workers' load.

Counts are the study's (earlier runs included; a trial a scheduler paused counts as paused, not running);
the ETA uses this run's target when one is known (``n_trials`` of the engine call, or of the study file).
Throughput is taken over the last minute while trials finish, else over the whole study. Worker readings
come from a helper thread every ``WORKERS_INTERVAL`` seconds (:mod:`~daskopt.dashboard.resources`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable, Div, TableColumn

from daskopt.dashboard.base import Background, Component, fmt
from daskopt.dashboard.resources import COLUMNS, readings
from daskopt.dashboard.snapshot import SUSPENDED, Snapshot, timestamp

WINDOW = 60.0
WORKERS_INTERVAL = 5.0
TILE = (
    "<div style='display:inline-block;margin:0 22px 4px 0'><div style='font-size:11px;color:#666'>{label}</div>"
    "<div style='font-size:20px;font-weight:600' class='daskopt-{key}'>{value}</div></div>"
)


class Summary(Component):
    """Tiles with the study's numbers; ``source`` holds the worker table."""

    def __init__(self, client: object = None) -> None:
        self.client = client
        self.count = Div(text=_count_html(0), css_classes=["daskopt-count"], name="daskopt-count")
        self.tiles = Div(text="", sizing_mode="stretch_width")
        self.source = ColumnDataSource({name: [] for name in COLUMNS})
        self.workers = DataTable(
            source=self.source,
            columns=[TableColumn(field=name, title=name) for name in COLUMNS],
            height=110,
            width=620,
            index_position=None,
        )
        self._workers_job = Background(WORKERS_INTERVAL)
        self._finishes: deque[float] = deque()
        self._first_start: float | None = None
        self._last_finish: float | None = None
        self._workers_note = Div(text="")
        blocks: list[Any] = [row(self.count, self.tiles, sizing_mode="stretch_width")]
        if client is not None:
            blocks.append(column(self._workers_note, self.workers))
        self.root = column(*blocks, sizing_mode="stretch_width")

    def update(self, snapshot: Snapshot) -> None:
        for trial in snapshot.finished:
            finish = timestamp(trial.datetime_complete)
            if finish is not None:
                self._finishes.append(finish)
                self._last_finish = max(finish, self._last_finish or finish)
        for trial in snapshot.new[:1]:
            self._first_start = self._first_start or timestamp(trial.datetime_start)
        while self._finishes and self._finishes[0] < snapshot.now - WINDOW:
            self._finishes.popleft()
        finished = snapshot.finished_total
        count = _count_html(finished)
        if self.count.text != count:
            self.count.text = count
        tiles = self._tiles(snapshot, finished)
        if self.tiles.text != tiles:
            self.tiles.text = tiles
        if self.client is not None:
            fetch = (lambda: readings(self.client)) if getattr(self.client, "status", "") == "running" else None
            if self._workers_job.poll(time.monotonic(), fetch):
                self._show_workers()

    def _show_workers(self) -> None:
        if self._workers_job.error is not None:
            self._workers_note.text = f"<i>Workers: {type(self._workers_job.error).__name__}</i>"
        elif self._workers_job.result is not None:
            self._workers_note.text = "<b>Workers</b>"
            self.source.data = self._workers_job.result  # a handful of rows, replaced whole

    def rate(self, snapshot: Snapshot) -> float | None:
        """Trials finished per minute: over the last minute while trials finish, else overall."""
        start = snapshot.started_at or snapshot.origin
        if self._finishes:
            span = min(WINDOW, snapshot.now - start)
            return len(self._finishes) / span * 60.0 if span > 0 else None
        first = self._first_start or snapshot.origin
        if self._last_finish is not None and self._last_finish > first:
            return snapshot.finished_total / (self._last_finish - first) * 60.0
        return None

    def _tiles(self, snapshot: Snapshot, finished: int) -> str:
        counts = snapshot.counts
        rate = self.rate(snapshot)
        items: list[tuple[str, str, object]] = [
            ("complete", "complete", counts.get("COMPLETE", 0)),
            ("pruned", "pruned", counts.get("PRUNED", 0)),
            ("failed", "failed", counts.get("FAIL", 0)),
            ("running", "running", counts.get("RUNNING", 0)),
        ]
        if counts.get(SUSPENDED):  # RUNNING in storage, but holding no slot until resumed
            items.append(("paused", "paused", counts[SUSPENDED]))
        if counts.get("WAITING"):
            items.append(("waiting", "waiting", counts["WAITING"]))
        items.append(("rate", "trials / min", fmt(rate, 3) if rate else "-"))
        done = snapshot.run_finished if snapshot.run_finished is not None else finished
        if snapshot.n_trials:
            items.append(("progress", "this run", f"{done} / {snapshot.n_trials}"))
            remaining = max(0, snapshot.n_trials - done)
            items.append(("eta", "ETA", _duration(remaining / rate * 60.0) if rate and remaining else "-"))
        if snapshot.best_value is not None:
            items.append(("best", f"best (trial {snapshot.best_number})", fmt(snapshot.best_value)))
        elif snapshot.n_objectives > 1:
            items.append(("best", "objectives", str(snapshot.n_objectives)))
        if snapshot.started_at is not None:
            items.append(("elapsed", "elapsed", _duration(snapshot.now - snapshot.started_at)))
        return "".join(TILE.format(key=key, label=label, value=value) for key, label, value in items)


def _count_html(finished: int) -> str:
    return (
        "<div style='margin-right:22px'><div style='font-size:11px;color:#666'>finished</div>"
        f"<div style='font-size:28px;font-weight:700'><span class='daskopt-count-value'>{finished}</span></div></div>"
    )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")
