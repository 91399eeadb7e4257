"""A "Daskopt" entry in the Dask dashboard's "More" menu, for schedulers running in this process.

distributed builds its dashboard from ``distributed.dashboard.scheduler.applications`` when a scheduler
starts, and lists every ``/individual-*`` path under "More". So the entry exists only on schedulers that
start *after* :func:`register_dask_page` in this process (the ``LocalCluster`` that ``daskopt run`` or
``optimize(dashboard=...)`` starts). Its page runs on the scheduler's loop, in another thread than the
engine's, so it does not read the engine: it embeds the daskopt page(s) this process serves
(``running_dashboards``) in an iframe. For any other scheduler (a remote one, or a cluster created before
the call) both links are printed at start instead.
"""

from __future__ import annotations

import html
import time
from typing import Any

PATH = "/individual-daskopt"
_registered_at: float | None = None


def register_dask_page() -> bool:
    """Add the page to distributed's table (idempotent); False when the Dask dashboard is unavailable."""
    global _registered_at
    try:
        from distributed.dashboard import scheduler as dask_dashboard
    except ImportError:  # bokeh version not supported by distributed: no Dask dashboard at all
        return False
    dask_dashboard.applications.setdefault(PATH, _page)
    if _registered_at is None:
        _registered_at = time.time()
    return True


def dask_page_link(client: Any) -> str | None:
    """The entry's URL when ``client``'s scheduler runs in this process and started after registration."""
    scheduler = getattr(getattr(client, "cluster", None), "scheduler", None)
    started = getattr(scheduler, "time_started", None)
    link = getattr(client, "dashboard_link", None)
    if _registered_at is None or started is None or started < _registered_at or not link:
        return None
    return link.rsplit("/", 1)[0] + PATH


def _page(scheduler: Any, extra: dict[str, Any], doc: Any) -> None:
    from bokeh.models.widgets import Div

    div = Div(text=_body(), sizing_mode="stretch_both")

    def refresh() -> None:
        body = _body()
        if div.text != body:
            div.text = body

    doc.add_root(div)
    doc.title = "Dask: daskopt"
    doc.add_periodic_callback(refresh, 2000)


def _body() -> str:
    from daskopt.dashboard.app import running_dashboards

    urls = running_dashboards()
    if not urls:
        return "<p>No daskopt dashboard is being served by this process now.</p>"
    links = " &middot; ".join(f"<a href='{html.escape(u)}' target='_blank'>{html.escape(u)}</a>" for u in urls)
    frame = html.escape(urls[-1])
    return f"<p>daskopt dashboard: {links}</p><iframe src='{frame}' style='width:100%;height:1900px;border:0'></iframe>"
