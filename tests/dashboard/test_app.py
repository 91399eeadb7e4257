"""Serving the page: from storage, beside an engine, and from the ``daskopt dashboard`` command."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import optuna
import pytest
from bokeh.client import pull_session
from bokeh.document import Document
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from daskopt.dashboard import dashboard_starters, open_storage_study, running_dashboards, start_storage_dashboard
from daskopt.dashboard.page import Page
from daskopt.dashboard.snapshot import SnapshotBuilder
from daskopt.engine.state import Counts, TimelineEntry
from daskopt.errors import SpecError
from tests.dashboard.conftest import unpruned


@contextlib.contextmanager
def serving(study: optuna.Study) -> Iterator[str]:
    """The storage page of ``study`` on a private loop in a thread; yields its URL."""
    started: queue.Queue[tuple[str | None, asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        service = start_storage_dashboard(study)
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


def count_shown(document: Document) -> int:
    div = document.get_model_by_name("daskopt-count")
    return int(re.search(r"daskopt-count-value'>(\d+)<", div.text).group(1))


def test_storage_page_serves_sessions_and_shows_the_count(study):
    with serving(study) as url:
        assert url in running_dashboards()
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"bokeh" in response.read().lower()
        with pull_session(url=url) as session:
            assert count_shown(session.document) == len(study.trials)
    assert url not in running_dashboards()


def test_engine_page_gives_each_worker_slot_a_row(study):
    t0 = time.time()
    entries = [("w1", 0, 2, "COMPLETE"), ("w1", 1, 3, "PRUNED"), ("w1", 2.5, None, "RUNNING"), ("w2", 0, 1, "FAIL")]
    engine = SimpleNamespace(
        study=study,
        counts=Counts(complete=1),
        config=SimpleNamespace(n_trials=10),
        started_at=t0,
        client=None,
        timeline={
            i: TimelineEntry(i, w, t0 + s, None if e is None else t0 + e, state)
            for i, (w, s, e, state) in enumerate(entries)
        },
    )
    page = Page(SnapshotBuilder(study, engine))
    Document().add_root(page.root)
    page.update()
    rows = page.timeline.source.data["row"]
    assert rows == ["w1 #0", "w1 #1", "w1 #0", "w2 #0"]  # trial 2 reuses the slot trial 0 freed
    engine.timeline[2].ended, engine.timeline[2].state = t0 + 4, "COMPLETE"
    page.update()
    assert page.timeline.source.data["state"][2] == "COMPLETE"
    assert page.timeline.source.data["right"][2] == pytest.approx(4)


def test_a_storage_with_several_studies_needs_a_name(tmp_path):
    path = tmp_path / "s.journal"
    storage = JournalStorage(JournalFileBackend(str(path)))
    for name in ("one", "two"):
        optuna.create_study(study_name=name, storage=storage).optimize(unpruned, n_trials=2)
    with pytest.raises(SpecError, match=r"holds 2 studies \(one, two\); choose one with --study"):
        open_storage_study(f"journal:{path}")
    assert open_storage_study(f"journal:{path}", "two").study_name == "two"
    with pytest.raises(SpecError, match="no study named 'three'"):
        open_storage_study(f"journal:{path}", "three")
    with pytest.raises(SpecError, match="no such storage file"):
        open_storage_study(f"journal:{tmp_path / 'missing.journal'}")


def test_unknown_dashboard_options_are_named():
    with pytest.raises(ValueError, match=r"unknown dashboard option\(s\) \['prot'\]; valid options: host, port"):
        dashboard_starters({"prot": 1})
    assert dashboard_starters(None) == () and len(dashboard_starters({"port": 0})) == 1


def test_dashboard_command_serves_a_journal_study(tmp_path):
    path = tmp_path / "cli.journal"
    storage = JournalStorage(JournalFileBackend(str(path)))
    optuna.create_study(study_name="cli", storage=storage).optimize(unpruned, n_trials=5)
    process = subprocess.Popen(
        [sys.executable, "-m", "daskopt.cli", "dashboard", f"journal:{path}", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline()
        url = re.search(r"(http://\S+/daskopt)", line).group(1)
        with pull_session(url=url) as session:
            assert count_shown(session.document) == 5
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0  # a liveness wait: the server stops on Ctrl-C


def test_a_local_scheduler_started_after_registration_lists_the_page():
    from distributed import Client, LocalCluster

    from daskopt.dashboard import register_dask_page
    from daskopt.dashboard.dask_page import dask_page_link

    assert register_dask_page()
    with LocalCluster(n_workers=0, dashboard_address=":0", silence_logs=40) as cluster, Client(cluster) as client:
        with urllib.request.urlopen(client.dashboard_link, timeout=10) as response:
            assert b'individual-daskopt">Daskopt<' in response.read()  # in the "More" menu
        link = dask_page_link(client)
        assert link is not None and link.endswith("/individual-daskopt")
        with urllib.request.urlopen(link, timeout=10) as response:
            assert response.status == 200
