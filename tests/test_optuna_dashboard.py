"""The ``optuna-dashboard`` command that ``daskopt run`` prints serves the study it ran.

A real study runs through the command (journal storage, a 2-process LocalCluster); the test takes the
printed ``optuna-dashboard ...`` line exactly as printed, starts it on a free loopback port and reads the
study back over the dashboard's JSON API (and, with headless Chromium, from the rendered page).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import headless_chromium
from tests.conftest import free_port
from tests.studyfiles import write_study

pytest.importorskip("optuna_dashboard", reason="needs optuna-dashboard (the optuna-dashboard extra)")

NAME, N_TRIALS = "dashboard-check", 5
PREFIX = "daskopt: browse it with: "


class Dashboard:
    """The printed command, started as printed plus ``--host``/``--port``; ``get`` reads its JSON API."""

    def __init__(self, command: list[str], folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "optuna-dashboard.log"
        # the command is found as a user of this environment finds it: its scripts folder first on PATH
        scripts = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"optuna-dashboard exited {self.process.returncode}:\n{self.log.read_text()}")
            try:
                self.get("/api/meta")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(f"optuna-dashboard did not answer within {timeout_s:g}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """``daskopt run`` on a small study; the printed dashboard command, split as a shell would."""
    folder = tmp_path_factory.mktemp("optuna dashboard")  # a space in the path: the quoting must hold
    write_study(folder, name=NAME, n_trials=N_TRIALS)
    done = subprocess.run(
        [sys.executable, "-m", "daskopt.cli", "run", "study.toml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    line = next((line for line in done.stderr.splitlines() if line.startswith(PREFIX)), None)
    assert line is not None, f"no {PREFIX!r} line in:\n{done.stderr}"
    command = shlex.split(line.removeprefix(PREFIX))
    assert command == ["optuna-dashboard", str(folder / f"{NAME}.journal")]
    return command, folder


@pytest.fixture(scope="module")
def dashboard(printed: tuple[list[str], Path]) -> Iterator[Dashboard]:
    command, folder = printed
    server = Dashboard(command, folder)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_printed_command_serves_the_study_and_its_trials(dashboard: Dashboard) -> None:
    studies = dashboard.get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [NAME]
    detail = dashboard.get(f"/api/studies/{studies[0]['study_id']}")
    assert detail["name"] == NAME
    assert len(detail["trials"]) == N_TRIALS
    assert sorted(t["number"] for t in detail["trials"]) == list(range(N_TRIALS))
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    assert [p["name"] for p in detail["intersection_search_space"]] == ["x"]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    yield from headless_chromium(tmp_path / "chromium", window="1400,1000")


def page_shows(driver: Any, text: str, timeout_s: float = 60.0) -> bool:
    """Whether ``text`` appears in the rendered page (the app is client-side: poll until it has drawn)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in driver.execute_script("return document.body ? document.body.innerText : ''"):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.browser
def test_printed_command_page_shows_the_study_in_chromium(dashboard: Dashboard, browser: Any) -> None:
    browser.get(dashboard.url + "/dashboard")
    assert page_shows(browser, NAME), browser.execute_script("return document.body.innerText")
    study_id = dashboard.get("/api/studies")["study_summaries"][0]["study_id"]
    browser.get(f"{dashboard.url}/dashboard/studies/{study_id}")
    assert page_shows(browser, NAME), browser.execute_script("return document.body.innerText")
