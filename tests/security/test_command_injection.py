"""``daskopt run`` with a command objective: parameter values never reach a shell unless ``shell = true``.

Categorical values full of shell syntax must arrive as exactly one argument each and run nothing. The
payloads only create files (``touch``), so a regression shows up as a file, never as damage: a real
``; rm -rf ~`` has no place in a test. With ``shell = true`` (the explicit opt-in) a shell does run the
command line, yet each value is still quoted into one argument.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

NASTY = [
    "; touch pwned-semicolon",
    "$(touch pwned-subst)",
    "`touch pwned-backtick`",
    "a b | touch pwned-pipe && 'q' \"d\" > pwned-redirect",
    "{x}{{ }}",  # placeholder syntax inside a value is not formatted again
]
PROGRAM = """
import json, os, sys
number = os.environ["DASKOPT_TRIAL_NUMBER"]
with open(f"argv-{number}.json", "w") as handle:
    json.dump(sys.argv[1:], handle)
print('daskopt: {"value": 0.5}', flush=True)
"""
STUDY = """
[study]
name = "argv"
n_trials = {n_trials}

[objective]
{objective}

[space]
c = {{ type = "categorical", choices = {choices} }}
x = {{ type = "int", low = 0, high = 3 }}

[cluster]
kind = "local"
n_workers = 1

[dashboard]
enabled = false
"""


def _run(folder: Path, objective: str) -> list[optuna.trial.FrozenTrial]:
    (folder / "echo_argv.py").write_text(PROGRAM)
    text = STUDY.format(n_trials=len(NASTY), objective=objective, choices=json.dumps(NASTY))
    text += "".join(f"\n[[enqueue]]\nc = {json.dumps(value)}\nx = {i % 4}\n" for i, value in enumerate(NASTY))
    (folder / "study.toml").write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "daskopt.cli", "run", "study.toml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "argv.journal")))
    return optuna.load_study(study_name="argv", storage=storage).trials


def _argv_by_value(folder: Path, trials: list[optuna.trial.FrozenTrial]) -> dict[str, list[str]]:
    assert [t.state.name for t in trials] == ["COMPLETE"] * len(NASTY)
    return {t.params["c"]: json.loads((folder / f"argv-{t.number}.json").read_text()) for t in trials}


@pytest.mark.slow
def test_values_are_single_arguments_and_run_nothing_without_a_shell(tmp_path):
    trials = _run(tmp_path, 'command = ["python", "echo_argv.py", "{c}", "--x={x}"]')
    argv = _argv_by_value(tmp_path, trials)
    assert sorted(argv) == sorted(NASTY)
    for trial in trials:
        assert argv[trial.params["c"]] == [trial.params["c"], f"--x={trial.params['x']}"]
    assert sorted(p.name for p in tmp_path.rglob("pwned*")) == []


@pytest.mark.slow
def test_shell_is_an_explicit_opt_in_and_values_stay_quoted(tmp_path):
    python = shlex.quote(sys.executable)  # a shell line runs as written: no "python" fallback as for argv
    trials = _run(tmp_path, f'command = "{python} echo_argv.py {{c}} --x={{x}} && touch shell-ran"\nshell = true')
    assert (tmp_path / "shell-ran").exists()  # a shell did run the line
    argv = _argv_by_value(tmp_path, trials)
    assert sorted(argv) == sorted(NASTY)
    for trial in trials:
        assert argv[trial.params["c"]] == [trial.params["c"], f"--x={trial.params['x']}"]
    assert sorted(p.name for p in tmp_path.rglob("pwned*")) == []
