"""The W&B API key never shows up where ``daskopt run`` writes: its stdout and stderr, the storage, the
output folder (``best.json``, ``trials.csv``, ``events.jsonl``, the offline W&B runs, command logs).

tests/tracking covers the Python API in-process; this is the command, end to end, with the key in the
environment of the driver and of every worker it starts, and with one trial failing (the error path).
"""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest

FAKE_KEY = "fakecli0123456789abcdef0123456789abcdef0"
OBJECTIVE = """
import optuna

def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    for step in range(3):
        trial.report(x + step, step)
        trial.log({"extra": x * step}, step=step)
        if trial.should_prune():  # reads each decision (see tests/faults/test_finish_race.py)
            raise optuna.TrialPruned()
    if trial.number == 2:
        raise RuntimeError("this trial fails on purpose")
    return x
"""
STUDY = """
[study]
name = "keyed"
n_trials = 4

[objective]
callable = "obj:objective"

[space]
x = { type = "float", low = 0, high = 1 }

[cluster]
kind = "local"
n_workers = 1

[wandb]
tags = ["secret-test"]

[dashboard]
enabled = false
"""


@pytest.mark.slow
def test_daskopt_run_never_writes_the_api_key(tmp_path):
    pytest.importorskip("wandb")
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    (tmp_path / "study.toml").write_text(STUDY)
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline", "WANDB_SILENT": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "daskopt.cli", "run", "study.toml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "keyed.journal"))
    )
    trials = optuna.load_study(study_name="keyed", storage=storage).trials
    reasons = {t.number: t.user_attrs.get("fail_reason") for t in trials if t.state.name != "COMPLETE"}
    assert reasons.keys() == {2} and "fails on purpose" in reasons[2], (reasons, done.stderr)
    runs = list((tmp_path / "runs" / "keyed" / "wandb").glob("offline-run-*"))
    assert len(runs) >= 4, "the trials were not logged to offline W&B runs"  # the check below would be empty
    assert FAKE_KEY not in done.stdout + done.stderr
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    leaks = [str(path) for path in files if FAKE_KEY.encode() in path.read_bytes()]
    assert leaks == []
