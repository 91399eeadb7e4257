"""The page beside a real engine: ``optimize(..., dashboard=...)`` on a 2-process LocalCluster.

Trials wait on gate files (workers are processes, so files are the simplest shared signal): the test
opens the page while nothing has finished, lets trials run, and holds the last ones, so the page is
checked while the study is live and the count can be seen growing.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from bokeh.client import pull_session

import daskopt
from daskopt.dashboard import running_dashboards
from tests.browser import headless_chromium

N_TRIALS, HELD_FROM = 40, 30
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def gated(trial: optuna.Trial, folder: str) -> float:
    """~0.5 s of 'training' in 8 reported steps; starts once ``go`` exists, trials >= HELD_FROM once ``end`` does.

    0.5 s x 30 trials / 2 workers keeps the count moving for ~7 s: several of the page's 1 s refreshes. The
    gates open by themselves after 250 s only so that a failed test cannot leave trials waiting forever."""
    x = trial.suggest_float("x", -3, 3)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    gate = os.path.join(folder, "end" if trial.number >= HELD_FROM else "go")
    deadline = time.time() + 250
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.02)
    for step in range(8):
        time.sleep(0.06)
        trial.report(x * x + 8 - step + abs(lr), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x * x + abs(lr)


class LiveStudy:
    """``optimize`` with a dashboard on a background thread; ``open(name)`` releases a gate."""

    def __init__(self, client, folder: Path) -> None:  # type: ignore[no-untyped-def]
        self.folder = folder
        self.study = optuna.create_study(
            study_name="live", pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)
        )
        self.errors: list[BaseException] = []
        objective = functools.partial(gated, folder=str(folder))
        kwargs = dict(n_trials=N_TRIALS, client=client, dashboard={"port": 0}, show_progress_bar=False)
        self.thread = threading.Thread(target=self._run, args=(objective, kwargs), daemon=True)
        self.thread.start()
        self.url = wait_for(lambda: next(iter(running_dashboards()), None), "the dashboard URL", 60)

    def _run(self, objective: Callable[..., float], kwargs: dict) -> None:  # type: ignore[type-arg]
        try:
            daskopt.optimize(self.study, objective, **kwargs)
        except BaseException as exc:  # re-raised by finish()
            self.errors.append(exc)

    def open(self, gate: str) -> None:
        (self.folder / gate).touch()

    def finish(self) -> None:
        self.open("go")
        self.open("end")
        self.thread.join(timeout=120)
        assert not self.thread.is_alive() and not self.errors, self.errors
        assert not running_dashboards(), "the page stops with the call"


@pytest.fixture
def live(client, tmp_path) -> Iterator[LiveStudy]:  # type: ignore[no-untyped-def]
    study = LiveStudy(client, tmp_path)
    try:
        yield study
    finally:
        study.finish()


def wait_for(probe: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def shown(url: str) -> int:
    with pull_session(url=url) as session:
        text = session.document.get_model_by_name("daskopt-count").text
    return int(re.search(r"daskopt-count-value'>(\d+)<", text).group(1))


@pytest.mark.slow  # make test-fast leaves it out; make test runs it
def test_engine_page_counts_trials_as_they_finish(live):
    assert shown(live.url) == 0
    live.open("go")
    wait_for(lambda: shown(live.url) >= HELD_FROM, f"{HELD_FROM} finished trials on the page")
    assert live.study.trials[HELD_FROM].state.name == "RUNNING"


DEEP = """
const selector = arguments[0], found = [];
const visit = (root) => {
  root.querySelectorAll(selector).forEach((e) => found.push(e));
  root.querySelectorAll('*').forEach((e) => { if (e.shadowRoot) visit(e.shadowRoot); });
};
visit(document);
return found.map((e) => e.textContent);
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    yield from headless_chromium(tmp_path / "chromium", window="1400,1900", console_log=True)


@pytest.mark.browser
@pytest.mark.slow  # make test-fast leaves it out; make test runs it
def test_page_renders_in_chromium_and_its_count_grows(browser, live):  # the browser first: the gates wait
    browser.get(live.url)
    count = lambda: [int(t) for t in browser.execute_script(DEEP, ".daskopt-count-value")]  # noqa: E731
    wait_for(lambda: len(browser.execute_script(DEEP, "canvas")) >= 6, "the plots' canvases")
    assert wait_for(count, "the finished-trials count") == [0]
    live.open("go")
    seen = [count()[0]]
    while seen[-1] < HELD_FROM:
        time.sleep(0.2)
        seen.append(wait_for(count, "the count")[0])
        assert len(seen) < 300, f"the count stopped growing: {seen[-10:]}"
    assert seen == sorted(seen) and len(set(seen)) >= 3, seen  # grew step by step, never backwards
    time.sleep(1.5)  # one more refresh so every plot shows the held trials as RUNNING
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe
