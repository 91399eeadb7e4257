"""The ``/daskopt`` page: title, summary, then the components in a grid, refreshed every second.

Each browser session gets its own document, components and snapshot cursor. The periodic callback runs
on the Bokeh server's loop (the engine's, when there is one); a component that raises is logged and
skipped, so one bad plot never freezes the page or the study.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models.widgets import Div

from daskopt.dashboard.base import Component
from daskopt.dashboard.curves import Curves
from daskopt.dashboard.history import History, ParetoHistory
from daskopt.dashboard.importance import Importance
from daskopt.dashboard.params import Params
from daskopt.dashboard.snapshot import SnapshotBuilder
from daskopt.dashboard.summary import Summary
from daskopt.dashboard.table import Table
from daskopt.dashboard.timeline import Timeline

logger = logging.getLogger("daskopt")
PERIOD_MS = 1000


class Page:
    """All components of one session, fed from one snapshot cursor."""

    def __init__(self, builder: SnapshotBuilder, source_note: str = "") -> None:
        study = builder.study
        engine = builder.engine
        names = list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])
        self.builder = builder
        self.summary = Summary(engine.client if engine is not None else None)
        self.history: Component = (
            History(study.directions[0]) if len(study.directions) == 1 else ParetoHistory(study.directions, names)
        )
        self.timeline = Timeline()
        self.curves = Curves()
        self.params = Params(study.directions[0], names[0] if study.metric_names else "objective")
        self.importance = Importance(study)
        self.table = Table()
        self.components: list[Component] = [
            self.summary,
            self.history,
            self.timeline,
            self.curves,
            self.params,
            self.importance,
            self.table,
        ]
        title = f"daskopt &middot; study <b>{html.escape(study.study_name)}</b>"
        note = f"<span style='font-size:12px;color:#666;margin-left:12px'>{html.escape(source_note)}</span>"
        self.root = column(
            Div(text=f"<h2 style='margin:4px 0'>{title}{note}</h2>", sizing_mode="stretch_width"),
            self.summary.root,
            row(self.history.root, self.timeline.root, sizing_mode="stretch_width"),
            row(self.curves.root, self.importance.root, sizing_mode="stretch_width"),
            self.params.root,
            self.table.root,
            sizing_mode="stretch_width",
        )

    def update(self) -> None:
        snapshot = self.builder.update()
        for component in self.components:
            try:
                component.update(snapshot)
            except Exception:
                logger.exception("daskopt dashboard: %s.update failed", type(component).__name__)


def make_document(make_builder: Callable[[], SnapshotBuilder], source_note: str = "") -> Callable[[Document], None]:
    """A Bokeh ``FunctionHandler`` body: build the page for a new session and schedule its updates."""

    def modify(doc: Document) -> None:
        page = Page(make_builder(), source_note)
        page.update()
        doc.add_root(page.root)
        doc.title = f"daskopt: {page.builder.study.study_name}"
        doc.add_periodic_callback(page.update, PERIOD_MS)

    return modify
