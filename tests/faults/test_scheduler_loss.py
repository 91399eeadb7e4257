"""The scheduler killed mid-study: the driver stops with a clear message within a bounded time, the
storage stays consistent (nothing RUNNING), and a rerun against a new scheduler resumes."""

from __future__ import annotations

import signal
import subprocess
import time

import optuna
import pytest

from tests.conftest import DaskCommandCluster
from tests.studyfiles import RUN, objective_source, release, start_run, wait_for_finished

STUDY = """
[study]
name = "lost"
n_trials = 40
[objective]
callable = "obj:objective"
[space]
x = {{ type = "float", low = -5, high = 5 }}
[cluster]
kind = "address"
address = "{address}"
scheduler_grace = "3s"
"""


def _study(folder) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "lost.journal"))
    return optuna.load_study(study_name="lost", storage=optuna.storages.JournalStorage(backend))


@pytest.mark.slow
def test_scheduler_killed_mid_study_then_resumed(tmp_path):
    (tmp_path / "obj.py").write_text(objective_source(tmp_path, sleep=0.2, hold_from=8))  # held: killed mid-study
    with DaskCommandCluster(tmp_path) as cluster:
        cluster.wait_for_workers()
        (tmp_path / "study.toml").write_text(STUDY.format(address=cluster.address))
        driver = start_run(tmp_path)
        wait_for_finished(tmp_path / "lost.journal", lambda: _study(tmp_path), 4)
        cluster.scheduler.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = driver.communicate(timeout=120)
        stopped_after = time.monotonic() - killed_at
    assert driver.returncode == 1, stderr
    assert "lost the Dask scheduler" in stderr and "Traceback" not in stderr
    assert stopped_after < 60
    interrupted = _study(tmp_path)
    assert all(t.state.is_finished() for t in interrupted.trials)
    completed = {t.number: t.value for t in interrupted.trials if t.state.name == "COMPLETE"}
    release(tmp_path)

    with DaskCommandCluster(tmp_path) as fresh:  # a new scheduler, and the file pointed at it
        fresh.wait_for_workers()
        (tmp_path / "study.toml").write_text(STUDY.format(address=fresh.address))
        rerun = subprocess.run(RUN, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    resumed = _study(tmp_path)
    assert all(t.state.is_finished() for t in resumed.trials)
    assert {t.number: t.value for t in resumed.trials if t.number in completed} == completed
    cancelled = [t for t in resumed.trials if t.state.name != "COMPLETE"]
    assert sum(t.state.name == "COMPLETE" for t in resumed.trials) + len(cancelled) == len(resumed.trials)
    assert sum(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in resumed.trials) >= 40
