"""The driver (``daskopt run``) SIGKILLed mid-study, with each file storage, then run again.

The rerun resumes: every trial completed before the kill is kept with its value, none is recorded twice,
the trials left RUNNING are marked FAIL ("interrupted") and re-run with their parameters, the new trials
continue the numbering, and the study ends with exactly ``n_trials`` outcomes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from tests.studyfiles import RUN, objective_source, release

N_TRIALS = 20
HOLD_FROM = 10  # trials from here on wait for the release: the kill always lands mid-study

STUDY = """
[study]
name = "killed"
n_trials = {n_trials}

[objective]
callable = "obj:objective"

[space]
x = {{ type = "float", low = -5, high = 5 }}

[sampler]
name = "tpe"
options = {{ seed = 3, n_startup_trials = 4 }}

[storage]
url = "{url}"

[cluster]
kind = "local"
n_workers = 2

[dashboard]
enabled = false
"""

STORAGES = {"journal": "journal:killed.journal", "sqlite": "sqlite:///killed.db"}


def _url(kind: str, folder: Path) -> str:
    return {"journal": f"journal:{folder / 'killed.journal'}", "sqlite": f"sqlite:///{folder / 'killed.db'}"}[kind]


def _storage(kind: str, folder: Path) -> optuna.storages.BaseStorage | str:
    if kind == "journal":
        backend = optuna.storages.journal.JournalFileBackend(str(folder / "killed.journal"))
        return optuna.storages.JournalStorage(backend)
    return _url(kind, folder)


def _progress(kind: str, folder: Path) -> tuple[int, int]:
    """(COMPLETE, RUNNING) trials, read without writing anything (the driver owns the storage while it runs)."""
    try:
        if kind == "sqlite":
            with sqlite3.connect(f"file:{folder / 'killed.db'}?mode=ro", uri=True, timeout=1) as db:
                rows = dict(db.execute("SELECT state, count(*) FROM trials GROUP BY state").fetchall())
        else:
            study = optuna.load_study(study_name="killed", storage=_storage(kind, folder))
            rows = {}
            for trial in study.get_trials(deepcopy=False):
                rows[trial.state.name] = rows.get(trial.state.name, 0) + 1
    except Exception:  # not created yet, or locked for a moment
        return 0, 0
    return rows.get("COMPLETE", 0), rows.get("RUNNING", 0)


def _load(kind: str, folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="killed", storage=_storage(kind, folder))


def _counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(STORAGES))
def test_killed_driver_resumes_with_every_completed_trial_kept_once(tmp_path, kind):
    (tmp_path / "obj.py").write_text(objective_source(tmp_path, sleep=0.3, hold_from=HOLD_FROM))
    (tmp_path / "study.toml").write_text(STUDY.format(n_trials=N_TRIALS, url=STORAGES[kind]))
    command = RUN
    driver = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and driver.poll() is None:
            complete, running = _progress(kind, tmp_path)
            if complete >= 6 and running:
                break
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the cluster it started, mid-study
        driver.wait()
    before = _load(kind, tmp_path).trials  # a snapshot: a Study object would read the rerun's trials too
    completed_before = {t.number: t.value for t in before if t.state.name == "COMPLETE"}
    running_before = {t.number: t.params for t in before if t.state.name == "RUNNING"}
    assert 6 <= len(completed_before) < N_TRIALS, "the driver was not killed mid-study"
    assert running_before, "no trial was running at the kill"
    last_before = max(t.number for t in before)
    latest_start = max(t.datetime_start for t in before)
    release(tmp_path)

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert "interrupted trial(s) marked FAIL and re-enqueued" in resumed.stderr
    after = _load(kind, tmp_path)
    counts = _counts(after)
    assert "RUNNING" not in counts and "WAITING" not in counts
    # nothing completed is lost or changed
    assert {t.number: t.value for t in after.trials if t.number in completed_before} == completed_before
    # what was running is FAIL "interrupted" and re-run once with the same parameters
    interrupted = {t.number: t for t in after.trials if t.number in running_before}
    assert all(t.state.name == "FAIL" for t in interrupted.values())
    assert all(t.user_attrs["fail_reason"].startswith("interrupted") for t in interrupted.values())
    reruns = [t for t in after.trials if t.user_attrs.get("retry_of") in running_before]
    assert sorted(t.user_attrs["retry_of"] for t in reruns) == sorted(running_before)
    # (a trial killed between its creation and its sampling has no parameters yet: its re-run samples them)
    assert all(running_before[t.user_attrs["retry_of"]].items() <= t.params.items() for t in reruns)
    # exact outcomes: every trial is either an outcome or an interrupted attempt that was re-run
    assert counts == {"COMPLETE": N_TRIALS, "FAIL": len(running_before)}
    # the rerun continued the study: its trials are numbered after the ones stored before the kill
    new = [t for t in after.trials if t.number > last_before]
    assert len(new) == N_TRIALS - len(completed_before)
    assert all(t.datetime_start > latest_start for t in new)
    # no completed trial is run again: only interrupted ones are
    assert {t.user_attrs["retry_of"] for t in after.trials if "retry_of" in t.user_attrs} == set(running_before)


@pytest.mark.slow
def test_resumed_seeded_sampler_does_not_replay_stored_points(tmp_path):
    (tmp_path / "obj.py").write_text(objective_source(tmp_path))
    text = STUDY.format(n_trials=10, url=STORAGES["journal"]).replace('name = "tpe"', 'name = "random"')
    (tmp_path / "study.toml").write_text(text.replace(", n_startup_trials = 4", ""))
    command = RUN
    for n_trials in ("5", "10"):  # a first run, then the same file resumed
        done = subprocess.run([*command, "--n-trials", n_trials], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    xs = [t.params["x"] for t in _load("journal", tmp_path).trials]
    assert len(xs) == 10
    assert len(set(xs)) == len(xs), "the resumed run proposed points the study already held"
