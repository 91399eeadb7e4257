"""Parameter importance (Optuna's mean-decrease-impurity evaluator), recomputed in the background.

Fitting a random forest takes from milliseconds to seconds, so it never runs on the event loop: a
helper thread recomputes it at most every ``INTERVAL`` seconds, only once ``MIN_COMPLETE`` trials have
completed and only when more have completed since. fANOVA is not used: it is much slower for the same
ranking. Without scikit-learn the block says so instead of plotting.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import optuna
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FactorRange, Range1d
from bokeh.models.widgets import Div
from bokeh.plotting import figure

from daskopt.dashboard.base import PLOT_HEIGHT, Background, Component
from daskopt.dashboard.snapshot import Snapshot

INTERVAL = 10.0
MIN_COMPLETE = 5


class Importance(Component):
    """Horizontal bars, one per parameter, largest on top."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.available = importlib.util.find_spec("sklearn") is not None
        self.source = ColumnDataSource({"name": [], "importance": []})
        self.note = Div(text="")
        self.y_range = FactorRange(factors=[])
        fig = figure(
            title="Parameter importance (mean decrease in impurity)",
            height=PLOT_HEIGHT,
            sizing_mode="stretch_width",
            y_range=self.y_range,
            x_range=Range1d(start=0, end=1),
            tools="save",
            toolbar_location=None,
        )
        fig.hbar(y="name", right="importance", height=0.7, source=self.source, color="#1f77b4")
        self.root = column(fig, self.note, sizing_mode="stretch_width")
        self._job = Background(INTERVAL)
        self._computed_at = -1  # completed trials the shown result was computed from
        self._complete = 0
        self._set_note()

    def update(self, snapshot: Snapshot) -> None:
        self._complete = snapshot.counts.get("COMPLETE", 0)
        due = self.available and self._complete >= MIN_COMPLETE and self._complete != self._computed_at
        if self._job.poll(snapshot.now, self._compute(self._complete) if due else None):
            self._show()
        self._set_note()

    def _compute(self, complete: int) -> Callable[[], tuple[int, dict[str, float]]]:
        study = self.study

        def run() -> tuple[int, dict[str, float]]:  # on the helper thread
            from optuna.importance import MeanDecreaseImpurityImportanceEvaluator, get_param_importances

            target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
            evaluator = MeanDecreaseImpurityImportanceEvaluator(seed=0)
            return complete, dict(get_param_importances(study, evaluator=evaluator, target=target))

        return run

    def _show(self) -> None:
        if self._job.error is not None or self._job.result is None:
            return
        self._computed_at, importances = self._job.result
        ranked = sorted(importances.items(), key=lambda item: item[1])  # hbar draws bottom-up
        self.y_range.factors = [name for name, _ in ranked]
        self.source.data = {"name": [n for n, _ in ranked], "importance": [v for _, v in ranked]}

    def _set_note(self) -> None:
        text = _note(self.available, self._complete, self._job.error, self._computed_at)
        if self.note.text != text:
            self.note.text = text


def _note(available: bool, complete: int, error: Any, computed_at: int) -> str:
    if not available:
        return "<i>Parameter importance needs scikit-learn (<code>pip install scikit-learn</code>).</i>"
    if complete < MIN_COMPLETE:
        return f"<i>Parameter importance appears after {MIN_COMPLETE} completed trials.</i>"
    if error is not None:
        return f"<i>Parameter importance failed: {type(error).__name__}: {error}</i>"
    if computed_at > 0:
        return f"<i>From {computed_at} completed trials; recomputed at most every {INTERVAL:g} s.</i>"
    return "<i>Computing parameter importance...</i>"
