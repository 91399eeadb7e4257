"""The latest trials as a table: number, state, value, duration, parameters, why it failed.

New trials stream in (running ones included) and are patched when they finish; the source keeps the
latest ``LIMIT`` rows, so the table costs the same at 100 and at 100,000 trials.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable, TableColumn
from optuna.trial import FrozenTrial

from daskopt.dashboard.base import Component, RowWindow, fmt
from daskopt.dashboard.snapshot import Snapshot

LIMIT = 1000
COLUMNS = ("number", "state", "value", "duration", "params", "note")
TITLES = ("#", "state", "value", "duration (s)", "parameters", "fail reason")
WIDTHS = (50, 80, 110, 90, 480, 260)


class Table(Component):
    """A DataTable of the latest ``LIMIT`` trials."""

    def __init__(self) -> None:
        self.source = ColumnDataSource({name: [] for name in COLUMNS})
        self.window = RowWindow(LIMIT)
        self.root = DataTable(
            source=self.source,
            columns=[TableColumn(field=c, title=t, width=w) for c, t, w in zip(COLUMNS, TITLES, WIDTHS, strict=True)],
            height=320,
            sizing_mode="stretch_width",
            index_position=None,
        )

    def update(self, snapshot: Snapshot) -> None:
        patches: dict[str, list[tuple[int, Any]]] = {name: [] for name in COLUMNS[1:]}
        for trial in snapshot.changed:
            index = self.window.index(trial.number)
            if index is not None:
                for name, value in zip(COLUMNS[1:], _row(trial)[1:], strict=True):
                    patches[name].append((index, value))
        patches = {name: items for name, items in patches.items() if items}
        if patches:  # before the stream, whose rollover would shift the indices
            self.source.patch(patches)
        rows: dict[str, Any] = {name: [] for name in COLUMNS}
        for trial in snapshot.new[-LIMIT:]:
            self.window.add(trial.number)
            for name, value in zip(COLUMNS, _row(trial), strict=True):
                rows[name].append(value)
        if rows["number"]:
            self.source.stream(rows, rollover=LIMIT)


def _row(trial: FrozenTrial) -> tuple[object, ...]:
    values = trial.values
    value = "" if values is None else (fmt(values[0]) if len(values) == 1 else ", ".join(fmt(v) for v in values))
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    params = ", ".join(f"{k}={fmt(v, 4) if isinstance(v, float) else v}" for k, v in trial.params.items())
    return trial.number, trial.state.name, value, fmt(duration, 4), params, str(trial.user_attrs.get("fail_reason", ""))
