"""The live Bokeh page of a study: ``optimize(..., dashboard=True)``, ``daskopt run`` or ``daskopt dashboard``."""

from __future__ import annotations

import functools
from typing import Any

from daskopt.dashboard.app import (
    DashboardService,
    running_dashboards,
    serve_storage,
    start_dashboard,
    start_storage_dashboard,
)
from daskopt.dashboard.dask_page import register_dask_page
from daskopt.dashboard.storage import open_storage_study

OPTIONS = ("host", "port", "allow_websocket_origin")

__all__ = [
    "DashboardService",
    "dashboard_starters",
    "open_storage_study",
    "register_dask_page",
    "running_dashboards",
    "serve_storage",
    "start_dashboard",
    "start_storage_dashboard",
]


def dashboard_starters(dashboard: bool | dict[str, Any] | None) -> tuple[Any, ...]:
    """``EngineConfig.services`` for ``optimize``'s ``dashboard`` argument (``True`` or options)."""
    if not dashboard:
        return ()
    options = {} if dashboard is True else dict(dashboard)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown dashboard option(s) {unknown}; valid options: {', '.join(OPTIONS)}")
    register_dask_page()  # in time for a LocalCluster that optimize() itself starts
    return (functools.partial(start_dashboard, **options),)
