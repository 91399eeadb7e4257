"""Elastic trials broken in the middle of a resize: a worker killed, the driver killed.

A resize stops the trial at a checkpoint and starts it again at the new size (tests/elastic/training.py).
Here the new stretch is held before its first step (the restart is in flight) while the test kills the
worker running it, or the driver. Either way the trial goes on from its newest checkpoint, and ends
with the losses of an unresized run.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import psutil
import pytest
from distributed import Client, LocalCluster

import daskopt
from tests.elastic.training import elastic_objective, reference

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"dashboard_address": ":0", "silence_logs": 50}
LONG = {"lr": 0.05, "steps": 40, "sleep_s": 0.05}
SHORT = {"lr": 0.01, "steps": 2, "sleep_s": 0.05}
SETTINGS = {"max_replicas": 2, "initial_batch": 16, "max_batch": 16, "min_interval_s": 0, "restart_s": 0}


def _wait_for(marker: Path, timeout: float = 120.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(p.name for p in marker.glob("resumed-*"))
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("no trial was resized: the restart the test breaks never came")


def _check_goes_on(trials: list[optuna.trial.FrozenTrial], reason: str) -> None:
    """Trial 0 ended FAIL (``reason``), one attempt went on from its checkpoint to the unresized result."""
    first = trials[0]
    assert first.state.name == "FAIL" and first.user_attrs["fail_reason"].startswith(reason), first.user_attrs
    attempts = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(attempts) == 1, [t.user_attrs for t in trials]
    attempt = attempts[0]
    assert attempt.state.name == "COMPLETE", attempt.user_attrs
    assert attempt.user_attrs["restore"][:2] == [0, 0]  # its checkpoints, from the newest one
    assert attempt.user_attrs["replicas"][-1][0] > 0, attempt.user_attrs["replicas"]  # it did not start over
    expected = reference(LONG["lr"], LONG["steps"])
    assert attempt.value == pytest.approx(expected[-1], rel=1e-9)
    assert sorted(attempt.intermediate_values) == list(range(LONG["steps"]))  # carried, then its own
    for step, value in attempt.intermediate_values.items():
        assert value == pytest.approx(expected[step], rel=1e-9)


def _optimize_in_thread(
    study: optuna.Study, client: Client, marker: Path, folder: Path, errors: list[BaseException]
) -> threading.Thread:
    """The long and the short trial, resized and held at ``marker``, optimized in a thread of their own; what
    it raises goes to ``errors`` (raised again in the test's thread)."""

    def optimize() -> None:
        try:
            daskopt.optimize(
                study,
                functools.partial(elastic_objective, marker=str(marker), hold_s=60.0),
                n_trials=2,
                client=client,
                elastic=SETTINGS,
                failures={"max_retries": 1},
                tracking={"checkpoint_dir": folder / "checkpoints"},
                show_progress_bar=False,
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=optimize)
    thread.start()
    return thread


def _part_workers(dask_scheduler: Any) -> list[str]:
    """The workers running a part of a trial's replicas (the ranks after the objective's own)."""
    return [
        str(ts.processing_on.address)
        for key, ts in dask_scheduler.tasks.items()
        if "-part-" in str(key) and ts.processing_on
    ]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=["its-own-worker", "the-worker-of-a-part"])
def test_a_worker_killed_while_a_trial_restarts_at_a_new_size(tmp_path: Path, workers: int) -> None:
    """Two slots, on one worker or one on each of two. The trial grows to 2 replicas (across both workers in
    the second case) and a worker dies before the first step of the new stretch: the trial's own (its
    task, its ranks), or the part's, whose rank the objective's ranks then lose. Either way the trial is
    lost, not failed, and goes on from its checkpoint."""
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "hold").touch()
    study = optuna.create_study()
    for point in (LONG, SHORT):
        study.enqueue_trial(point)
    errors: list[BaseException] = []
    resources = {"GPU_SLOT": 2 // workers}
    with (
        LocalCluster(n_workers=workers, threads_per_worker=2, resources=resources, **QUIET) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers, timeout=60)
        pids = client.run(os.getpid)
        thread = _optimize_in_thread(study, client, marker, tmp_path, errors)
        try:
            resumed = _wait_for(marker)[0]
            assert resumed.startswith("resumed-0-")
            if workers == 1:
                victim = next(iter(pids.values()))
            else:
                assert resumed.endswith("-2")  # grown to 2 replicas, so across both workers
                parts = client.run_on_scheduler(_part_workers)
                assert len(parts) == 1, parts
                victim = pids[parts[0]]
            ranks = psutil.Process(victim).children(recursive=True)  # its launch zygote and the ranks it forked
            os.kill(victim, signal.SIGKILL)  # the worker, its task and its ranks with it
            _, alive = psutil.wait_procs(ranks, timeout=10)
            assert alive == [], f"processes of the killed worker still ran 10 s later: {alive}"
        finally:
            (marker / "hold").unlink()
            thread.join(300)
    assert not thread.is_alive() and not errors, errors
    _check_goes_on(study.trials, "trial lost")
    if workers == 2:
        assert "replica on another worker was lost" in study.trials[0].user_attrs["fail_reason"]
    assert study.trials[1].state.name == "COMPLETE"


STUDY = """
[study]
name = "elastic"
n_trials = 2

[objective]
callable = "obj:objective"

[space]
lr = {{ type = "float", low = 0.001, high = 0.1, log = true }}
steps = {{ type = "int", low = 1, high = 200 }}
sleep_s = {{ type = "float", low = 0.0, high = 1.0 }}

[[enqueue]]
lr = {long[lr]}
steps = {long[steps]}
sleep_s = {long[sleep_s]}

[[enqueue]]
lr = {short[lr]}
steps = {short[steps]}
sleep_s = {short[sleep_s]}

[elastic]
max_replicas = 2
initial_batch = 16
max_batch = 16
restart_s = 0
min_interval_s = 0

[storage]
url = "journal:elastic.journal"

[cluster]
kind = "local"
n_workers = 2

[dashboard]
enabled = false
"""

OBJECTIVE = """
import sys

sys.path.insert(0, {root!r})

from tests.elastic.training import elastic_objective


def objective(trial):
    return elastic_objective(trial, marker={marker!r}, hold_s=120.0)
"""


def _load(folder: Path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "elastic.journal"))
    return optuna.load_study(study_name="elastic", storage=optuna.storages.JournalStorage(backend))


@pytest.mark.slow
def test_the_driver_killed_while_a_trial_restarts_at_a_new_size(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "hold").touch()
    (tmp_path / "obj.py").write_text(OBJECTIVE.format(root=str(ROOT), marker=str(marker)))
    (tmp_path / "study.toml").write_text(STUDY.format(long=LONG, short=SHORT))
    run = [sys.executable, "-m", "daskopt.cli", "run", "study.toml"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    driver = subprocess.Popen(
        run, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        assert _wait_for(marker)[0].startswith("resumed-0-")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the cluster it started
        driver.wait()
    before = _load(tmp_path).trials
    assert before[0].state.name == "RUNNING" and len(before[0].user_attrs["replicas"]) >= 2
    (marker / "hold").unlink()

    rerun = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr, rerun.stderr
    _check_goes_on(_load(tmp_path).trials, "interrupted")
