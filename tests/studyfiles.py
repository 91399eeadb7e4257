"""Study files and process checks shared by the tests that drive the real ``daskopt`` command."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

OBJECTIVE = """
import os
import time

def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    time.sleep(SLEEP)
    if trial.number >= HOLD_FROM:  # held until the test creates RELEASE: the study cannot end before a kill
        deadline = time.monotonic() + 300
        while not os.path.exists(RELEASE) and time.monotonic() < deadline:
            time.sleep(0.05)
    return x * x
"""


def objective_source(folder: Path, sleep: float = 0.0, hold_from: int | None = None) -> str:
    """``obj.py``: a quadratic over x in [-5, 5], sleeping ``sleep`` s a trial. Trials numbered ``hold_from``
    and above wait until ``release(folder)`` is called, so a test can kill a study mid-way on any machine."""
    held = 10**9 if hold_from is None else hold_from
    return (
        OBJECTIVE.replace("SLEEP", repr(sleep))
        .replace("HOLD_FROM", str(held))
        .replace("RELEASE", repr(str(folder / "release")))
    )


def release(folder: Path) -> None:
    """Let the held trials of ``objective_source(folder, hold_from=...)`` (and all later ones) run."""
    (folder / "release").touch()


STUDY = """
[study]
name = "{name}"
n_trials = {n_trials}

[objective]
callable = "obj:objective"

[space]
x = {{ type = "float", low = -5, high = 5 }}

[sampler]
name = "random"
options = {{ seed = 1 }}

[cluster]
{cluster}
"""

LOCAL = 'kind = "local"\nn_workers = 2'


def write_study(
    folder: Path,
    *,
    name: str = "cli",
    n_trials: int = 8,
    sleep: float = 0.0,
    cluster: str = LOCAL,
    hold_from: int | None = None,
) -> Path:
    """``obj.py`` (see ``objective_source``) and ``study.toml`` over it, in ``folder``."""
    (folder / "obj.py").write_text(objective_source(folder, sleep, hold_from))
    path = folder / "study.toml"
    path.write_text(STUDY.format(name=name, n_trials=n_trials, cluster=cluster))
    return path


def live_processes(marker: str) -> list[str]:
    """Command lines of live (non-zombie) processes that mention ``marker`` (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append(cmdline)
    return found


RUN = [sys.executable, "-m", "daskopt.cli", "run", "study.toml"]
"""``daskopt run study.toml`` with this interpreter (CI's PATH may have no ``python``)."""


def start_run(folder: Path, **options: Any) -> subprocess.Popen[str]:
    """``daskopt run study.toml`` in ``folder`` as a child process; output piped as text unless overridden."""
    return subprocess.Popen(
        RUN, cwd=folder, **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **options}
    )


def wait_for_finished(journal: Path, load: Callable[[], optuna.Study], count: int, timeout_s: float = 120.0) -> None:
    """Return once the study in ``journal`` holds ``count`` finished trials; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if journal.exists() and sum(t.state.is_finished() for t in load().trials) >= count:
                return
        except KeyError:  # the journal is there, the study's record not yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"{journal.name} did not reach {count} finished trials within {timeout_s:g}s")
