"""Study files and process checks shared by the tests that drive the real ``daskopt`` command."""

from __future__ import annotations

from pathlib import Path

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
