"""Objective values as trials finish, with the best-so-far line; the Pareto front for several objectives.

The x axis is the order in which trials *finished*, not their number: trials finish out of order on a
cluster, and only in finishing order is best-so-far a monotone line that can be streamed point by
point (by number, a late improvement would rewrite the line after it). The hover shows the number.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource, HoverTool
from bokeh.plotting import figure
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from daskopt.dashboard.base import PLOT_HEIGHT, STATE_COLORS, Component, values_of
from daskopt.dashboard.snapshot import Snapshot


class History(Component):
    """Single objective: value per completed trial and the best so far."""

    def __init__(self, direction: StudyDirection) -> None:
        self._maximize = direction == StudyDirection.MAXIMIZE
        self._seq = 0
        self._best: float | None = None
        self.source = ColumnDataSource({"seq": [], "number": [], "value": []})
        self.best_source = ColumnDataSource({"seq": [], "best": [], "number": []})
        fig = figure(
            title="Objective value (best so far as a line)",
            height=PLOT_HEIGHT,
            sizing_mode="stretch_width",
            x_axis_label="trials completed, in finishing order",
            y_axis_label="objective",
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        dots = fig.scatter("seq", "value", source=self.source, size=6, alpha=0.6, color=STATE_COLORS["COMPLETE"])
        fig.step("seq", "best", source=self.best_source, mode="after", line_width=2, color="#d62728")
        fig.add_tools(HoverTool(renderers=[dots], tooltips=[("trial", "@number"), ("value", "@value{0.[000000]}")]))
        self.root = fig

    def update(self, snapshot: Snapshot) -> None:
        rows: dict[str, Any] = {"seq": [], "number": [], "value": []}
        best: dict[str, Any] = {"seq": [], "best": [], "number": []}
        for trial in snapshot.finished:
            values = values_of(trial) if trial.state == TrialState.COMPLETE else None
            if values is None:
                continue
            self._seq += 1
            value = values[0]
            rows["seq"].append(self._seq)
            rows["number"].append(trial.number)
            rows["value"].append(value)
            if self._best is None or (value > self._best if self._maximize else value < self._best):
                self._best = value
            best["seq"].append(self._seq)
            best["best"].append(self._best)
            best["number"].append(trial.number)
        if rows["seq"]:
            self.source.stream(rows)
            self.best_source.stream(best)


class ParetoHistory(Component):
    """Several objectives: every completed trial by its first two values, the current front on top."""

    def __init__(self, directions: list[StudyDirection], names: list[str]) -> None:
        self._signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]  # to minimize
        self._front: list[tuple[list[float], int]] = []
        self.source = ColumnDataSource({"x": [], "y": [], "number": []})
        self.front_source = ColumnDataSource({"x": [], "y": [], "number": []})
        fig = figure(
            title="Objectives (Pareto front in red)",
            height=PLOT_HEIGHT,
            sizing_mode="stretch_width",
            x_axis_label=names[0],
            y_axis_label=names[1] if len(names) > 1 else "",
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        dots = fig.scatter("x", "y", source=self.source, size=6, alpha=0.5, color="#1f77b4")
        fig.scatter("x", "y", source=self.front_source, size=9, color="#d62728")
        fig.add_tools(HoverTool(renderers=[dots], tooltips=[("trial", "@number"), ("values", "(@x, @y)")]))
        self.root = fig

    def update(self, snapshot: Snapshot) -> None:
        rows: dict[str, Any] = {"x": [], "y": [], "number": []}
        front_moved = False
        for trial in snapshot.finished:
            values = values_of(trial) if trial.state == TrialState.COMPLETE else None
            if values is None or len(values) < 2:
                continue
            rows["x"].append(values[0])
            rows["y"].append(values[1])
            rows["number"].append(trial.number)
            front_moved |= self._add_to_front(trial, values)
        if rows["x"]:
            self.source.stream(rows)
        if front_moved:  # the front is small: replacing it whole is cheaper than tracking removals
            front = sorted(self._front, key=lambda item: item[0][0])
            self.front_source.data = {
                "x": [v[0] for v, _ in front],
                "y": [v[1] for v, _ in front],
                "number": [n for _, n in front],
            }

    def _add_to_front(self, trial: FrozenTrial, values: list[float]) -> bool:
        point = [s * v for s, v in zip(self._signs, values, strict=False)]
        if any(_dominates(other, point) for other, _ in self._front_signed()):
            return False
        self._front = [(v, n) for v, n in self._front if not _dominates(point, self._signed(v))]
        self._front.append((values, trial.number))
        return True

    def _signed(self, values: list[float]) -> list[float]:
        return [s * v for s, v in zip(self._signs, values, strict=False)]

    def _front_signed(self) -> list[tuple[list[float], int]]:
        return [(self._signed(v), n) for v, n in self._front]


def _dominates(a: list[float], b: list[float]) -> bool:
    """``a`` dominates ``b`` when minimizing every value: no worse anywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=False)) and any(x < y for x, y in zip(a, b, strict=False))
