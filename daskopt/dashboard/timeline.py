"""When each trial ran and where: one row per worker slot, one bar per stretch of a trial, coloured by its
outcome.

Idle gaps between bars are the time a slot waited for the loop or the scheduler. With an engine each
worker gets as many rows as it ran trials at once; from storage (no worker known) trials are packed
greedily into the fewest rows by start and end time. Bars stream in as trials start; a running bar's
right end and its colour are patched until it ends.

A trial a scheduler paused and resumed ran in several stretches, each a bar of its own (keyed by the
engine timeline's key, not the trial number), possibly on another worker: a stretch that ended with a
pause is ``SUSPENDED``, and the hover names the trial and which part of it a bar is.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.plotting import figure

from daskopt.dashboard.base import PLOT_HEIGHT, STATE_COLORS, Component
from daskopt.dashboard.snapshot import Snapshot, Span, SpanKey

COLUMNS = ("number", "row", "left", "right", "state", "color", "worker", "part")


class Timeline(Component):
    """Gantt chart of trials over seconds since the run started."""

    def __init__(self) -> None:
        self.source = ColumnDataSource({name: [] for name in COLUMNS})
        self._slots: dict[str, list[float | None]] = {}  # worker -> end time of each row (None: busy)
        self._row_of: dict[SpanKey, tuple[str, int]] = {}  # span key -> (worker, slot)
        self._index: dict[SpanKey, int] = {}  # span key -> source row
        self._open: dict[SpanKey, Span] = {}  # running spans, their right end follows the clock
        self.y_range = FactorRange(factors=[])
        fig = figure(
            title="Timeline (one row per worker slot)",
            height=PLOT_HEIGHT,
            sizing_mode="stretch_width",
            y_range=self.y_range,
            x_axis_label="seconds since start",
            tools="xpan,xwheel_zoom,box_zoom,reset,save",
        )
        bars = fig.hbar(
            y="row",
            left="left",
            right="right",
            height=0.8,
            source=self.source,
            color="color",
            line_color="white",
            line_width=0.5,
            legend_field="state",
        )
        fig.legend.orientation = "horizontal"
        fig.add_layout(fig.legend[0], "below")  # bars fill the plot: a legend inside would cover them
        fig.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[
                    ("trial", "@number @part"),
                    ("state", "@state"),
                    ("worker", "@worker"),
                    ("seconds", "@left{0.0} to @right{0.0}"),
                ],
            )
        )
        self.root = fig

    def update(self, snapshot: Snapshot) -> None:
        origin, now = snapshot.origin, snapshot.now
        rows: dict[str, Any] = {name: [] for name in COLUMNS}
        patches: dict[str, list[tuple[int, Any]]] = {"right": [], "state": [], "color": []}
        for span in snapshot.spans_changed:
            self._change(span, origin, patches)
        start = len(self.source.data["number"])
        for span in snapshot.spans_new:
            if span.key in self._index:
                continue
            label = self._place(span)
            self._index[span.key] = start + len(rows["number"])
            right = (span.ended if span.ended is not None else now) - origin
            part = f"(part {span.part + 1})" if span.part else ""
            for name, value in zip(
                COLUMNS,
                (span.number, label, span.started - origin, right, span.state, _color(span.state), span.worker, part),
                strict=True,
            ):
                rows[name].append(value)
            if span.ended is None:
                self._open[span.key] = span
        for key in self._open:  # still running: stretch to now
            if self._index[key] < start:
                patches["right"].append((self._index[key], now - origin))
        if rows["number"]:
            self.source.stream(rows)
        patches = {name: items for name, items in patches.items() if items}
        if patches:
            self.source.patch(patches)

    def _change(self, span: Span, origin: float, patches: dict[str, list[tuple[int, Any]]]) -> None:
        """A span shown running that ended (its slot is free from its end), or changed state unended."""
        index = self._index.get(span.key)
        if index is None:
            return
        patches["state"].append((index, span.state))
        patches["color"].append((index, _color(span.state)))
        if span.ended is None:
            if span.key in self._open:
                self._open[span.key] = span
            return
        self._open.pop(span.key, None)
        worker, slot = self._row_of[span.key]
        self._slots[worker][slot] = span.ended
        patches["right"].append((index, span.ended - origin))

    def _place(self, span: Span) -> str:
        """The first row of the span's worker free at its start (a new row when none is)."""
        slots = self._slots.setdefault(span.worker, [])
        slot = next((i for i, end in enumerate(slots) if end is not None and end <= span.started), None)
        if slot is None:
            slot = len(slots)
            slots.append(None)
            self.y_range.factors = [*self.y_range.factors, _label(span.worker, slot)]
        slots[slot] = span.ended
        self._row_of[span.key] = (span.worker, slot)
        return _label(span.worker, slot)


def _label(worker: str, slot: int) -> str:
    name = worker.split("://", 1)[-1]
    return f"{name} #{slot}" if name else f"slot {slot}"


def _color(state: str) -> str:
    return STATE_COLORS.get(state, "#7f7f7f")
