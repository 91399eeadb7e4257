"""The latest trials as a table: number, state (SUSPENDED while paused), value, duration, parameters, why
it failed.

New trials stream in (running ones included) and are patched when they finish; the source keeps the
latest ``LIMIT`` rows, so the table costs the same at 100 and at 100,000 trials.
"""

from __future__ import annotations

from bokeh.models.widgets import DataTable, TableColumn
from optuna.trial import FrozenTrial

from daskopt.attributes import FAIL_REASON
from daskopt.dashboard.base import Component, TrialRows, fmt
from daskopt.dashboard.snapshot import Snapshot, state_name

LIMIT = 1000
COLUMNS = ("number", "state", "value", "duration", "params", "note")
TITLES = ("#", "state", "value", "duration (s)", "parameters", "fail reason")
WIDTHS = (50, 80, 110, 90, 480, 260)


class Table(Component):
    """A DataTable of the latest ``LIMIT`` trials."""

    def __init__(self) -> None:
        self.rows = TrialRows(COLUMNS, _row, LIMIT)
        self.source = self.rows.source
        self.root = DataTable(
            source=self.source,
            columns=[TableColumn(field=c, title=t, width=w) for c, t, w in zip(COLUMNS, TITLES, WIDTHS, strict=True)],
            height=320,
            sizing_mode="stretch_width",
            index_position=None,
        )

    def update(self, snapshot: Snapshot) -> None:
        self.rows.patch(snapshot.changed)
        self.rows.append(snapshot.new)


def _row(trial: FrozenTrial) -> tuple[object, ...]:
    values = trial.values
    value = "" if values is None else (fmt(values[0]) if len(values) == 1 else ", ".join(fmt(v) for v in values))
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    params = ", ".join(f"{k}={fmt(v, 4) if isinstance(v, float) else v}" for k, v in trial.params.items())
    return trial.number, state_name(trial), value, fmt(duration, 4), params, str(trial.user_attrs.get(FAIL_REASON, ""))
