"""Serving the page: beside a running engine (``start_dashboard``) or from a study's storage (``serve_storage``).

The Bokeh server runs on the *current* event loop: inside ``optimize`` that is the engine's own loop, so
the page reads the engine's state without locks or copies (DESIGN: Bokeh facts), and anything slow is
pushed to a helper thread by the components. The socket is bound before the server is built so that
``port=0`` still yields an exact websocket-origin allowlist (Bokeh's own default would admit only
``localhost:<port>`` and refuse a browser that opened ``127.0.0.1``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable, Sequence

import optuna
from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.server.server import BaseServer
from bokeh.server.tornado import BokehTornado
from bokeh.server.util import bind_sockets
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from daskopt.dashboard.dask_page import dask_page_link
from daskopt.dashboard.page import make_document
from daskopt.dashboard.snapshot import SnapshotBuilder
from daskopt.dashboard.storage import open_storage_study
from daskopt.engine.view import EngineView
from daskopt.errors import SpecError

logger = logging.getLogger("daskopt")
PATH = "/daskopt"
_RUNNING: list[DashboardService] = []  # read by tests and by the page in Dask's "More" menu


class DashboardService:
    """A started page; ``url`` is None when it could not start (the study runs on without it)."""

    def __init__(self, server: BaseServer | None, http: HTTPServer | None, url: str | None) -> None:
        self.url = url
        self._server = server
        self._http = http
        if url is not None:
            _RUNNING.append(self)

    async def close(self) -> None:
        """Stop serving; open pages show that they lost the connection."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self._server is None or self._http is None:
            return
        self._server.stop()
        try:
            await asyncio.wait_for(self._http.close_all_connections(), timeout=2.0)
        except TimeoutError:
            logger.debug("daskopt: dashboard connections did not close within 2 s")
        self._server = self._http = None


def running_dashboards() -> list[str]:
    """URLs of the pages this process serves now."""
    return [service.url for service in list(_RUNNING) if service.url]


def start_dashboard(
    engine: EngineView, host: str = "127.0.0.1", port: int = 0, allow_websocket_origin: Sequence[str] = ()
) -> DashboardService:
    """The engine's page (an ``EngineConfig.services`` starter): call on the engine's running loop."""
    modify = make_document(lambda: SnapshotBuilder(engine.study, engine), "live")
    service = _start(modify, host, port, allow_websocket_origin)
    if service.url is not None:
        dask = dask_page_link(engine.client)
        plain = getattr(engine.client, "dashboard_link", None)
        _announce(service.url, f"{dask} (Dask dashboard, More > Daskopt)" if dask else plain)
    return service


def start_storage_dashboard(
    study: optuna.Study, host: str = "127.0.0.1", port: int = 0, n_trials: int | None = None
) -> DashboardService:
    """The page for a study running elsewhere (or finished), polling its storage; on the current loop."""
    modify = make_document(lambda: SnapshotBuilder(study, n_trials=n_trials), "from storage")
    return _start(modify, host, port, ())


def serve_storage(
    storage_url: str,
    study_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    n_trials: int | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """``daskopt dashboard``: serve a stored study's page until interrupted (Ctrl-C raises KeyboardInterrupt)."""
    study = open_storage_study(storage_url, study_name)

    async def main() -> None:
        service = start_storage_dashboard(study, host, port, n_trials)
        if service.url is None:
            raise SpecError(f"cannot listen on {host}:{port}; choose another --port (0 picks a free one)")
        (on_ready or _announce)(service.url)
        try:
            await asyncio.Event().wait()
        finally:
            await service.close()

    asyncio.run(main())


def _start(modify: Callable[[Document], None], host: str, port: int, extra_origins: Sequence[str]) -> DashboardService:
    try:
        sockets, bound = bind_sockets(host, port)
    except OSError as exc:
        logger.warning("daskopt: dashboard not started: cannot listen on %s:%s (%s)", host, port, exc)
        return DashboardService(None, None, None)
    tornado_app = BokehTornado(
        {PATH: Application(FunctionHandler(modify))},
        extra_websocket_origins=sorted(_origins(host, bound) | set(extra_origins)),
        prefix="",
    )
    http = HTTPServer(tornado_app)
    http.add_sockets(sockets)
    server = BaseServer(IOLoop.current(), tornado_app, http)
    server.start()
    return DashboardService(server, http, f"http://{_display_host(host)}:{bound}{PATH}")


def _display_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def _origins(host: str, port: int) -> set[str]:
    """Host:port forms a browser may use to reach this server."""
    names = {"localhost", "127.0.0.1", host, _display_host(host)}
    if host in ("", "0.0.0.0", "::"):
        names.add(socket.getfqdn())
        try:
            names.add(socket.gethostbyname(socket.gethostname()))
        except OSError:
            pass
    return {f"{name}:{port}" for name in names if name and name not in ("0.0.0.0", "::")}


def _announce(url: str, dask: str | None = None) -> None:
    logger.info("daskopt: dashboard at %s", url)
    print(f"daskopt: dashboard at {url}", file=sys.stderr, flush=True)
    if dask:
        print(f"daskopt: Dask dashboard at {dask}", file=sys.stderr, flush=True)
