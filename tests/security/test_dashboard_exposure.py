"""The live page listens on 127.0.0.1 unless told otherwise, and is read-only.

Read-only means: no model a browser could use to act (no buttons, inputs or data-editing tools), no
server-side Python callback a browser message could trigger (only the page's own periodic update), and
an HTTP POST is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import optuna
import psutil
import pytest
from bokeh.document import Document
from bokeh.models import AbstractButton, EditTool, InputWidget

import daskopt
from daskopt.dashboard import running_dashboards, start_storage_dashboard
from daskopt.dashboard.page import make_document
from daskopt.dashboard.snapshot import SnapshotBuilder


def _study() -> optuna.Study:
    study = optuna.create_study(study_name="exposed", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.suggest_categorical("c", ["a", "b"])
        for step in range(3):
            trial.report(x + step, step)
        return x

    study.optimize(objective, n_trials=12)
    return study


def listening_ips(url: str) -> set[str]:
    """The addresses this process listens on at ``url``'s port."""
    port = urllib.parse.urlsplit(url).port
    return {
        c.laddr.ip
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


@contextlib.contextmanager
def serving(study: optuna.Study, **options: object) -> Iterator[str]:
    """The storage page of ``study`` on a private loop in a thread; yields its URL."""
    started: queue.Queue[tuple[str | None, asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        service = start_storage_dashboard(study, **options)  # type: ignore[arg-type]
        started.put((service.url, asyncio.get_running_loop(), stop))
        await stop.wait()
        await service.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    url, loop, stop = started.get(timeout=10)
    assert url is not None
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)


def test_engine_page_listens_on_loopback_by_default(client):
    seen: list[tuple[str, set[str]]] = []

    def look(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not seen:  # while the study runs, from its own loop
            seen.extend((url, listening_ips(url)) for url in running_dashboards())

    study = optuna.create_study()
    daskopt.optimize(
        study,
        lambda t: t.suggest_float("x", 0, 1),
        n_trials=3,
        client=client,
        dashboard=True,
        callbacks=[look],
        show_progress_bar=False,
    )
    assert len(seen) == 1
    url, ips = seen[0]
    assert url.startswith("http://127.0.0.1:")
    assert ips == {"127.0.0.1"}
    assert running_dashboards() == []  # and it is gone once the call returns


def test_storage_page_listens_on_loopback_by_default_and_elsewhere_only_when_told():
    study = _study()
    with serving(study) as url:
        assert url.startswith("http://127.0.0.1:") and listening_ips(url) == {"127.0.0.1"}
    with serving(study, host="0.0.0.0") as url:  # told otherwise: every interface
        assert listening_ips(url) == {"0.0.0.0"}


def test_page_has_nothing_a_browser_could_act_with():
    doc = Document()
    make_document(lambda: SnapshotBuilder(_study()), "test")(doc)
    models = list(doc.models)
    assert len(models) > 20  # the whole page was built
    actionable = [m for m in models if isinstance(m, (InputWidget, AbstractButton, EditTool))]
    assert actionable == []
    # no server-side handler of property changes or UI events: a message from a browser runs no code here
    handlers = [m for m in models if getattr(m, "_callbacks", None) or getattr(m, "_event_callbacks", None)]
    assert handlers == []


def test_http_post_is_refused_and_changes_nothing():
    study = _study()
    before = [(t.number, t.state, t.values, t.params) for t in study.trials]
    with serving(study) as url:
        request = urllib.request.Request(url, data=b"number=0&state=FAIL", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (403, 405)
    assert [(t.number, t.state, t.values, t.params) for t in study.trials] == before
