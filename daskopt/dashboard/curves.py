"""Learning curves: the intermediate values each trial reported, one line per trial, pruned ones greyed.

One ``multi_line`` row per trial: a new trial streams one row, a running trial that reported more steps
patches its own row. Only the latest ``LIMIT`` trials with curves are kept (older rows roll over), which
bounds what the browser draws on long studies.
"""

from __future__ import annotations

from bokeh.models import HoverTool
from bokeh.plotting import figure
from optuna.trial import FrozenTrial

from daskopt.dashboard.base import PLOT_HEIGHT, STATE_COLORS, Component, TrialRows
from daskopt.dashboard.snapshot import Snapshot, state_name

LIMIT = 1000
COLUMNS = ("number", "xs", "ys", "state", "color", "alpha")
ALPHA = {"COMPLETE": 0.8, "RUNNING": 1.0, "SUSPENDED": 0.8, "PRUNED": 0.35, "FAIL": 0.35}


class Curves(Component):
    """Intermediate values against their step."""

    def __init__(self) -> None:
        self.rows = TrialRows(COLUMNS, _row, LIMIT)
        self.source = self.rows.source
        fig = figure(
            title=f"Intermediate values (latest {LIMIT} trials; pruned in grey)",
            height=PLOT_HEIGHT,
            sizing_mode="stretch_width",
            x_axis_label="step",
            y_axis_label="reported value",
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        lines = fig.multi_line("xs", "ys", source=self.source, line_color="color", line_alpha="alpha", line_width=1.5)
        fig.add_tools(HoverTool(renderers=[lines], tooltips=[("trial", "@number"), ("state", "@state")]))
        self.root = fig

    def update(self, snapshot: Snapshot) -> None:
        unshown = self.rows.patch(snapshot.changed)
        appended = [t for t in unshown if t.intermediate_values]  # first reports since we first saw them
        appended += [t for t in snapshot.new[-LIMIT:] if t.intermediate_values and t.number not in self.rows.window]
        self.rows.append(appended)


def _row(trial: FrozenTrial) -> tuple[object, ...]:
    steps = sorted(trial.intermediate_values)
    state = state_name(trial)
    return (
        trial.number,
        steps,
        [trial.intermediate_values[s] for s in steps],
        state,
        STATE_COLORS.get(state, "#7f7f7f"),
        ALPHA.get(state, 0.5),
    )
