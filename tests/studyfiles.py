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
import time

def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    time.sleep(SLEEP)
    return x * x
"""

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
    folder: Path, *, name: str = "cli", n_trials: int = 8, sleep: float = 0.0, cluster: str = LOCAL
) -> Path:
    """``obj.py`` (a quadratic, sleeping ``sleep`` s a trial) and ``study.toml`` over it, in ``folder``."""
    (folder / "obj.py").write_text(OBJECTIVE.replace("SLEEP", repr(sleep)))
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


def wait_for_finished(journal: Path, load: Callable[[], optuna.Study], count: int, timeout_s: float = 60.0) -> None:
    """Return once the study in ``journal`` holds ``count`` finished trials, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if journal.exists() and sum(t.state.is_finished() for t in load().trials) >= count:
            return
        time.sleep(0.2)
