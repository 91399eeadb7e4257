"""A trial that goes silent: its worker process is frozen (SIGSTOP), as a partitioned or hung host would be.

Nothing closes its connection and Dask still lists the worker, so only the loop's heartbeat check can
notice. With ``heartbeat_timeout=3`` the trial must be declared lost (FAIL with "no heartbeat", or retried
with the same parameters), the study must end with exact outcomes and nothing RUNNING, and after the frozen
process is killed the nanny brings the cluster back to full strength.

The converse: when the whole machine pauses (a VM descheduled, a laptop asleep), the loop and the trials
stop together, and once they resume no trial may be declared lost for the time nobody ran.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from distributed import Client

import daskopt
from tests.conftest import local_client, states

HEARTBEAT_TIMEOUT = 3.0
WATCHDOG_S = 60.0  # a study of 8 tiny trials ends ~4 s after the freeze; a bound with room for a slow machine


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Client]:
    """A private cluster: these tests freeze and kill its workers."""
    with local_client(2, 1, silence_logs=50) as client:
        yield client


def freezes_on_trial_1(trial: optuna.Trial, pid_file: str) -> float:
    """Trial 1 (first attempt only) writes its worker's pid, then waits to be frozen by the test."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 1 and "retry_of" not in trial.user_attrs:
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(120)  # SIGSTOPped long before this ends
    time.sleep(0.05)
    return x


def silent_then_returns(trial: optuna.Trial, seconds: float) -> float:
    """Healthy but quiet: no report and no suggest round trip for longer than the heartbeat timeout."""
    x = trial.suggest_float("x", 0, 1)
    time.sleep(seconds)
    return x


class Freezer(threading.Thread):
    """Waits for the pid file, then SIGSTOPs that process (once).

    A watchdog: if the study has not ended ``WATCHDOG_S`` after the freeze, the frozen process is killed
    (Dask then reschedules what it held) and ``watchdog_fired`` is set, so a study that can only finish
    once the silent worker dies fails its test instead of hanging it.
    """

    def __init__(self, pid_file: Path) -> None:
        super().__init__(daemon=True)
        self.pid_file = pid_file
        self.pid: int | None = None
        self.watchdog_fired = False
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.done.is_set() and time.monotonic() < deadline:
            text = self.pid_file.read_text() if self.pid_file.exists() else ""
            if text.strip():
                self.pid = int(text)
                os.kill(self.pid, signal.SIGSTOP)
                break
            time.sleep(0.01)
        if self.pid is not None and not self.done.wait(WATCHDOG_S):
            self.watchdog_fired = True
            os.kill(self.pid, signal.SIGKILL)


def _recover(client: Client, pid: int | None) -> None:
    """Kill the frozen process (a stopped process still dies of SIGKILL); wait for its replacement."""
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pids = {p for p in client.run(os.getpid, on_error="ignore").values() if isinstance(p, int)}
        except Exception:
            pids = set()
        if len(pids) == 2 and pid not in pids:
            return
        time.sleep(0.2)
    raise AssertionError(f"the cluster did not recover 2 workers after killing the frozen pid {pid}")


@pytest.mark.parametrize(
    ("max_retries", "channel"),
    [(0, "direct"), (0, "relay"), pytest.param(1, "direct", marks=pytest.mark.slow)],
    ids=["fail", "fail-relayed", "retry"],
)
def test_frozen_worker_trial_is_lost_after_heartbeat_timeout(cluster_client, tmp_path, max_retries, channel):
    pid_file = tmp_path / "pid"
    freezer = Freezer(pid_file)
    freezer.start()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    objective = functools.partial(freezes_on_trial_1, pid_file=str(pid_file))
    started = time.monotonic()
    try:
        daskopt.optimize(
            study,
            objective,
            n_trials=8,
            client=cluster_client,
            failures=daskopt.Failures(max_retries=max_retries, heartbeat_timeout=HEARTBEAT_TIMEOUT),
            show_progress_bar=False,
            channel=channel,
        )
        elapsed = time.monotonic() - started
    finally:
        freezer.done.set()
        freezer.join()
        _recover(cluster_client, freezer.pid)
    assert freezer.pid is not None, "trial 1 never started"
    assert not freezer.watchdog_fired, f"the study ended only after the frozen worker was killed ({elapsed:.0f} s)"
    counts = states(study)
    assert "RUNNING" not in counts and "WAITING" not in counts
    lost = study.trials[1]
    assert lost.state.name == "FAIL"
    assert lost.user_attrs["fail_reason"].startswith("trial lost")
    assert f"no heartbeat for {HEARTBEAT_TIMEOUT:g}s" in lost.user_attrs["fail_reason"]
    if max_retries:
        assert counts == {"COMPLETE": 8, "FAIL": 1}  # 8 outcomes + the lost attempt
        retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
        assert retry.state.name == "COMPLETE"
        assert retry.params == lost.params and retry.user_attrs["attempt"] == 1
    else:
        assert counts == {"COMPLETE": 7, "FAIL": 1}


def reports_for(trial: optuna.Trial, seconds: float) -> float:
    x = trial.suggest_float("x", 0, 1)
    for step in range(int(seconds / 0.05)):
        time.sleep(0.05)
        trial.report(x, step)
    return x


def test_a_paused_machine_loses_no_trial(cluster_client):
    """The first trial's tell freezes every worker and the loop together for 2 heartbeat timeouts."""
    pids = [p for p in cluster_client.run(os.getpid).values() if isinstance(p, int)]
    paused: list[float] = []

    def pause_everything(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if paused:
            return
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(2 * HEARTBEAT_TIMEOUT)  # on the loop's thread: the loop is paused too
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        paused.append(time.monotonic())

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    daskopt.optimize(
        study,
        functools.partial(reports_for, seconds=1.0),
        n_trials=6,
        client=cluster_client,
        failures=daskopt.Failures(heartbeat_timeout=HEARTBEAT_TIMEOUT),
        callbacks=[pause_everything],
        show_progress_bar=False,
    )
    assert paused, "the pause never happened"
    assert states(study) == {"COMPLETE": 6}, [t.user_attrs.get("fail_reason") for t in study.trials]


def test_quiet_but_alive_trial_is_not_lost(cluster_client):
    study = optuna.create_study()
    objective = functools.partial(silent_then_returns, seconds=HEARTBEAT_TIMEOUT + 2.5)
    daskopt.optimize(
        study,
        objective,
        n_trials=2,
        client=cluster_client,
        failures=daskopt.Failures(heartbeat_timeout=HEARTBEAT_TIMEOUT),
        show_progress_bar=False,
    )
    assert states(study) == {"COMPLETE": 2}, [t.user_attrs.get("fail_reason") for t in study.trials]
