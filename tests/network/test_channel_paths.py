"""The trial channel across real network boundaries: client, scheduler and workers in three network
namespaces (tests/network/layout.py), the driver a separate process in the client's namespace.

Unrouted, the workers cannot open a connection to the client, as with a notebook attached to a cloud
cluster or a driver behind NAT; routed, everyone reaches everyone. Each test checks the outcome in the
study's storage: exact counts, nothing left RUNNING.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.network.layout import Layout, requires_netns

pytestmark = [pytest.mark.slow, requires_netns]

DRIVER = Path(__file__).with_name("driver.py")
OBJECTIVE = """
import os
import time
from pathlib import Path

import optuna

def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    if trial.number == HOLD_AT:  # a trial the test kills the worker of: it says where it runs, then waits
        Path(FOLDER, "held.tmp").write_text(str(os.getpid()))
        Path(FOLDER, "held.tmp").rename(Path(FOLDER, "held"))
        time.sleep(120)
    for step in range(STEPS):
        time.sleep(SLEEP)
        trial.report(x * x + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x * x
"""


def _start(layout: Layout, folder: Path, **settings: Any) -> subprocess.Popen[str]:
    steps, sleep, hold_at = settings.pop("steps", 5), settings.pop("sleep", 0.02), settings.pop("hold_at", -1)
    folder.mkdir(exist_ok=True)
    source = OBJECTIVE.replace("STEPS", str(steps)).replace("SLEEP", repr(sleep))
    (folder / "obj.py").write_text(source.replace("HOLD_AT", str(hold_at)).replace("FOLDER", repr(str(folder))))
    settings = {"folder": str(folder), "scheduler": layout.scheduler_address_for_client, **settings}
    return layout.popen_in_client(
        [sys.executable, str(DRIVER), json.dumps(settings)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(layout: Layout, driver: subprocess.Popen[str], folder: Path, timeout: float = 180) -> tuple[str, dict]:
    try:
        _, stderr = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        driver.kill()
        _, stderr = driver.communicate()
        raise AssertionError(f"the driver did not finish in {timeout} s\n{stderr[-3000:]}\n{layout.logs()}") from None
    assert driver.returncode == 0, f"{stderr[-3000:]}\n{layout.logs()}"
    return stderr, json.loads((folder / "result.json").read_text())


def _study(folder: Path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "study.journal"))
    return optuna.load_study(study_name="netns", storage=optuna.storages.JournalStorage(backend))


def _states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _finished(folder: Path) -> int:
    """Finished trials so far; 0 before the driver has created the study (the journal file comes first)."""
    if not (folder / "study.journal").exists():
        return 0
    try:
        study = _study(folder)
    except KeyError:
        return 0
    return sum(t.state.is_finished() for t in study.trials)


@pytest.fixture(scope="module")
def unrouted(tmp_path_factory):
    with Layout(tmp_path_factory.mktemp("unrouted"), routed=False) as layout:
        layout.wait_for_workers()
        yield layout


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    with Layout(tmp_path_factory.mktemp("routed"), routed=True) as layout:
        layout.wait_for_workers()
        yield layout


def test_a_routed_layout_uses_the_direct_channel(routed, tmp_path):
    stderr, result = _finish(routed, _start(routed, tmp_path, n_trials=12, channel="auto"), tmp_path)
    assert result["outcome"] == "ok"
    assert f"trial channel: direct to {routed.client_ip}:" in stderr
    assert "2 of 2 workers reached it" in stderr
    states = _states(_study(tmp_path))
    assert sum(states.values()) == 12 and set(states) <= {"COMPLETE", "PRUNED"}, states


def test_b_workers_that_cannot_reach_the_client_use_the_relay(unrouted, tmp_path):
    stderr, result = _finish(unrouted, _start(unrouted, tmp_path, n_trials=12, channel="auto"), tmp_path)
    assert result["outcome"] == "ok"
    line = next(line for line in stderr.splitlines() if "trial channel:" in line)
    assert f"relayed through the scheduler: workers cannot reach this client at {unrouted.client_ip}:" in line
    assert "network is unreachable" in line and "2 of 2" in line
    states = _states(_study(tmp_path))
    assert sum(states.values()) == 12 and set(states) <= {"COMPLETE", "PRUNED"}, states
    assert states.get("PRUNED", 0) > 0  # prune questions and decisions crossed the relay


def test_e_forced_direct_where_workers_cannot_reach_is_one_line_at_once(unrouted, tmp_path):
    stderr, result = _finish(unrouted, _start(unrouted, tmp_path, n_trials=12, channel="direct"), tmp_path)
    outcome = result["outcome"]
    assert outcome.startswith("ChannelUnreachable: workers cannot reach this client at ")
    assert unrouted.client_ip in outcome and "network is unreachable" in outcome
    assert 'channel = "auto" (or "relay")' in outcome and "\n" not in outcome
    assert result["elapsed_s"] < 30  # the probe's few seconds, not the study's timeout (150 s of silence before)
    assert _study(tmp_path).trials == []  # nothing was asked


@pytest.mark.parametrize("layout_name", ["unrouted", "routed"])
def test_c_a_worker_killed_mid_study_is_retried_on_either_path(layout_name, request, tmp_path):
    """Relay (unrouted) and direct (routed) give the same outcome: the lost trial is FAIL "trial lost ...",
    retried with its parameters, exact counts, nothing RUNNING."""
    layout: Layout = request.getfixturevalue(layout_name)
    settings = {"steps": 10, "sleep": 0.1, "failures": {"max_retries": 2}, "hold_at": 3}
    driver = _start(layout, tmp_path, n_trials=10, channel="auto", **settings)
    held = tmp_path / "held"  # trial 3 writes its worker's pid there and waits, so it is surely running
    deadline = time.monotonic() + 120
    while not held.exists() and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    assert held.exists(), f"trial 3 never started\n{layout.logs()}"
    victim = int(held.read_text())
    assert victim in layout.worker_pids()
    os.kill(victim, signal.SIGKILL)
    stderr, result = _finish(layout, driver, tmp_path)
    assert result["outcome"] == "ok", stderr
    assert ("relayed through the scheduler" in stderr) == (layout_name == "unrouted")
    study = _study(tmp_path)
    lost = [t for t in study.trials if "trial lost" in t.user_attrs.get("fail_reason", "")]
    assert [t.number for t in lost] == [3], _states(study)
    retried = {t.user_attrs["retry_of"] for t in study.trials if "retry_of" in t.user_attrs}
    assert {t.number for t in lost} <= retried
    assert all(t.state.is_finished() for t in study.trials)
    outcomes = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(outcomes) == 10, _states(study)


def test_d_relay_mode_scheduler_killed_ends_with_scheduler_lost(tmp_path):
    (tmp_path / "cluster").mkdir()
    with Layout(tmp_path / "cluster", routed=False) as layout:
        layout.wait_for_workers()
        folder = tmp_path / "study"
        driver = _start(
            layout, folder, n_trials=200, channel="relay", steps=10, sleep=0.1, failures={"scheduler_grace_s": 3}
        )
        deadline = time.monotonic() + 120
        while _finished(folder) < 3 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
        layout.kill_scheduler()
        stderr, result = _finish(layout, driver, folder, timeout=120)
    assert result["outcome"].startswith("SchedulerLost: lost the Dask scheduler"), stderr
    study = _study(folder)
    assert all(t.state.is_finished() for t in study.trials), _states(study)
