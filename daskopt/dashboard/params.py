"""Parameters against the objective: one scatter per parameter, and parallel coordinates.

Both stream one row per completed trial. The parameter set is read from the trials' distributions; a
define-by-run objective that introduces a new parameter later makes the component rebuild (the one case
that resends its data), since a column cannot be streamed into existence. Parallel coordinates place
each parameter on [0, 1] by its distribution's bounds (fixed, so rows never need re-scaling) and colour
lines by the objective through a colour mapper whose range is updated instead.
"""

from __future__ import annotations

import math
from typing import Any

from bokeh.layouts import column, gridplot
from bokeh.models import ColumnDataSource, FactorRange, FixedTicker, LinearColorMapper, Range1d
from bokeh.models.annotations import ColorBar
from bokeh.models.widgets import Div
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.transform import transform
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from daskopt.dashboard.base import PLOT_HEIGHT, Component, RowWindow, values_of
from daskopt.dashboard.snapshot import Snapshot

PARALLEL_LIMIT = 1000
SCATTER_LIMIT = 10_000


class Params(Component):
    """A grid of parameter-vs-objective scatters above a parallel-coordinates plot."""

    def __init__(self, direction: StudyDirection, objective_name: str = "objective") -> None:
        self.objective_name = objective_name
        self.distributions: dict[str, BaseDistribution] = {}
        self.completed: list[FrozenTrial] = []  # kept for a rebuild when a parameter appears
        palette = list(Viridis256) if direction == StudyDirection.MAXIMIZE else list(reversed(Viridis256))
        self.mapper = LinearColorMapper(palette=palette, low=0, high=1)  # bright = better
        self.source = ColumnDataSource({"number": [], "value": []})
        self.parallel = ColumnDataSource({"number": [], "xs": [], "ys": [], "value": []})
        self.window = RowWindow(PARALLEL_LIMIT)
        self.box = column(
            Div(text="<i>Parameters appear with the first completed trial.</i>"), sizing_mode="stretch_width"
        )
        self.root = self.box
        self._range: tuple[float, float] | None = None

    def update(self, snapshot: Snapshot) -> None:
        done = [t for t in snapshot.finished if t.state == TrialState.COMPLETE and values_of(t) is not None]
        if not done:
            return
        self.completed += done
        found = {name: d for t in done for name, d in t.distributions.items() if name not in self.distributions}
        if found:
            self.distributions.update(found)
            self._rebuild()
            return
        self._stream(done)

    def _rebuild(self) -> None:
        names = sorted(self.distributions)
        self.source.data = {"number": [], "value": [], **{_col(n): [] for n in names}}
        self.parallel.data = {"number": [], "xs": [], "ys": [], "value": []}
        self.window = RowWindow(PARALLEL_LIMIT)
        self.box.children = [self._scatters(names), self._parallel_figure(names)]
        self._stream(self.completed)

    def _stream(self, trials: list[FrozenTrial]) -> None:
        names = sorted(self.distributions)
        rows: dict[str, Any] = {"number": [], "value": [], **{_col(n): [] for n in names}}
        lines: dict[str, Any] = {"number": [], "xs": [], "ys": [], "value": []}
        for trial in trials[-SCATTER_LIMIT:]:
            value = trial.values[0]
            rows["number"].append(trial.number)
            rows["value"].append(value)
            for name in names:
                rows[_col(name)].append(_shown(trial, name, self.distributions[name]))
            self._widen(value)
        for trial in trials[-PARALLEL_LIMIT:]:
            self.window.add(trial.number)
            lines["number"].append(trial.number)
            lines["xs"].append(list(range(len(names))))
            lines["ys"].append([_unit(trial, name, self.distributions[name]) for name in names])
            lines["value"].append(trial.values[0])
        self.source.stream(rows, rollover=SCATTER_LIMIT)
        self.parallel.stream(lines, rollover=PARALLEL_LIMIT)

    def _widen(self, value: float) -> None:
        """Grow the colour range; only the mapper's two numbers go to the browser."""
        low, high = self._range if self._range is not None else (value, value)
        low, high = min(low, value), max(high, value)
        if (low, high) != self._range:
            self._range = (low, high)
            self.mapper.update(low=low, high=high if high > low else low + 1e-12)

    def _scatters(self, names: list[str]) -> Any:
        figures: list[Any] = []
        for name in names:
            distribution = self.distributions[name]
            options: dict[str, Any] = {}
            if isinstance(distribution, CategoricalDistribution):
                options["x_range"] = FactorRange(factors=[str(c) for c in distribution.choices])
            elif isinstance(distribution, (FloatDistribution, IntDistribution)):  # the searched range, fixed
                options["x_range"] = _bounds(distribution)
                options["x_axis_type"] = "log" if distribution.log else "linear"
            fig = figure(title=name, height=220, tools="pan,wheel_zoom,box_zoom,reset", **options)
            fig.scatter(_col(name), "value", source=self.source, size=5, alpha=0.6, color=_cmap(self.mapper))
            fig.yaxis.axis_label = self.objective_name
            figures.append(fig)
        return gridplot(figures, ncols=min(4, max(1, len(figures))), sizing_mode="stretch_width", toolbar_location=None)

    def _parallel_figure(self, names: list[str]) -> Any:
        fig = figure(
            title="Parallel coordinates (colour: objective, bright is better)",
            height=PLOT_HEIGHT,
            sizing_mode="stretch_width",
            y_range=Range1d(start=-0.05, end=1.05),
            tools="pan,wheel_zoom,reset,save",
        )
        fig.multi_line("xs", "ys", source=self.parallel, line_color=_cmap(self.mapper), line_alpha=0.5)
        fig.xaxis.ticker = FixedTicker(ticks=list(range(len(names))))
        fig.xaxis.major_label_overrides = {i: name for i, name in enumerate(names)}
        fig.yaxis.axis_label = "position in the parameter's range"
        for i in range(len(names)):
            fig.line([i, i], [0, 1], color="#444444", line_width=1)
        fig.add_layout(ColorBar(color_mapper=self.mapper, width=10, title=self.objective_name), "right")
        return fig


def _bounds(distribution: FloatDistribution | IntDistribution) -> Range1d:
    low, high = float(distribution.low), float(distribution.high)
    if distribution.log:
        return Range1d(start=low / 1.15, end=high * 1.15)
    pad = (high - low) * 0.04 or 0.5
    return Range1d(start=low - pad, end=high + pad)


def _col(name: str) -> str:
    return f"p:{name}"


def _cmap(mapper: LinearColorMapper) -> Any:
    return transform("value", mapper)


def _shown(trial: FrozenTrial, name: str, distribution: BaseDistribution) -> object:
    """The value as the scatter's x: a string for a categorical axis, NaN when the trial lacks it."""
    if name not in trial.params:
        return "" if isinstance(distribution, CategoricalDistribution) else math.nan
    value = trial.params[name]
    return str(value) if isinstance(distribution, CategoricalDistribution) else float(value)


def _unit(trial: FrozenTrial, name: str, distribution: BaseDistribution) -> float:
    """The value's place in its distribution, in [0, 1] (log scale for log distributions)."""
    if name not in trial.params:
        return math.nan
    value = trial.params[name]
    if isinstance(distribution, CategoricalDistribution):
        n = len(distribution.choices)
        return distribution.choices.index(value) / (n - 1) if n > 1 else 0.5
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        low, high, x = float(distribution.low), float(distribution.high), float(value)
        if distribution.log and low > 0:
            low, high, x = math.log(low), math.log(high), math.log(x)
        return (x - low) / (high - low) if high > low else 0.5
    return math.nan
