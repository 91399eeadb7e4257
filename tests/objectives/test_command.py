"""CommandObjective without Dask: real Optuna trials, small Python scripts as the programs.

This folder has no ``__init__.py`` on purpose: ``tests/objectives.py`` (the engine tests' helpers) would be
shadowed by a ``tests/objectives`` package.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from daskopt.errors import SpecError
from daskopt.objectives import CommandFailed, CommandObjective

PY = sys.executable
HEADER = """\
import json, os, signal, subprocess, sys, time
def say(**kw):
    print("daskopt: " + json.dumps(kw), flush=True)
"""


def script(tmp_path: Path, body: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return str(path)


def ask(params: dict[str, Any], pruner: optuna.pruners.BasePruner | None = None) -> tuple[optuna.Study, optuna.Trial]:
    """A running trial whose params are exactly ``params`` (one-choice categoricals)."""
    study = optuna.create_study(pruner=pruner or optuna.pruners.NopPruner())
    trial = study.ask({name: CategoricalDistribution([value]) for name, value in params.items()})
    return study, trial


class Proxy:
    """A trial handle that records what the objective does and can hook into ``report``."""

    def __init__(self, trial: optuna.Trial, on_report: Callable[[int], None] | None = None) -> None:
        self.trial = trial
        self.on_report = on_report
        self.logged: list[tuple[dict[str, Any], int | None]] = []
        self.params = trial.params
        self.number = trial.number

    def report(self, value: float, step: int) -> None:
        self.trial.report(value, step)
        if self.on_report is not None:
            self.on_report(step)

    def should_prune(self) -> bool:
        return self.trial.should_prune()

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.logged.append((metrics, step))


def objective(prog: str, *args: str, **kwargs: Any) -> CommandObjective:
    kwargs.setdefault("space_names", ["x"])
    return CommandObjective((PY, prog, *args), **kwargs)


def test_reports_stream_while_the_program_runs_and_final_value_wins(tmp_path: Path) -> None:
    go = tmp_path / "go"
    prog = script(
        tmp_path,
        f"""
        say(step=0, val_acc=0.5)
        deadline = time.monotonic() + 60
        while not os.path.exists({str(go)!r}):  # step 1 only after the test saw step 0 live
            if time.monotonic() > deadline:
                sys.exit(7)
            time.sleep(0.01)
        say(step=1, val_acc=0.7)
        say(value=0.93)
        """,
    )
    study, trial = ask({"x": 1})
    handle = Proxy(trial, on_report=lambda step: go.touch())
    result = objective(prog, metric="val_acc")(handle)  # type: ignore[arg-type]
    study.tell(trial, result)
    assert result == 0.93
    assert study.trials[0].intermediate_values == {0: 0.5, 1: 0.7}


@pytest.mark.parametrize(
    ("lines", "metric", "expected"),
    [
        ("say(step=0, value=0.2)\nsay(step=1, value=0.4)\n", "value", 0.4),
        ("say(step=0, loss=3)\nsay(step=4, loss=2.5)\n", "loss", 2.5),
        ("say(step=0, loss=3)\nsay(loss=1.5)\n", "loss", 1.5),  # the metric without a step is final
    ],
)
def test_result_is_final_value_else_last_report(tmp_path: Path, lines: str, metric: str, expected: float) -> None:
    _, trial = ask({"x": 1})
    assert objective(script(tmp_path, lines), metric=metric)(trial) == expected


def test_extra_keys_are_logged_when_the_handle_can_log(tmp_path: Path) -> None:
    prog = script(tmp_path, "say(step=2, value=0.1, loss=0.3, lr=0.01)\nsay(value=0.2, test_acc=0.8)\n")
    _, trial = ask({"x": 1})
    handle = Proxy(trial)
    assert objective(prog)(handle) == 0.2  # type: ignore[arg-type]
    assert handle.logged == [({"loss": 0.3, "lr": 0.01}, 2), ({"test_acc": 0.8}, None)]


ECHO = 'say(value=0, argv=sys.argv[1:])\nopen(sys.argv[0] + ".argv", "w").write(json.dumps(sys.argv[1:]))\n'
NASTY = "a b; rm -rf ~ $(touch pwned) 'q'"


@pytest.mark.parametrize("shell", [False, True])
def test_each_value_is_exactly_one_argument(tmp_path: Path, shell: bool) -> None:
    prog = script(tmp_path, ECHO)
    template = ("--c={c}", "{c}", "{{literal}}", "{x:.2f}")
    if shell:
        command: str | tuple[str, ...] = " ".join([shlex.quote(PY), shlex.quote(prog), *template])
    else:
        command = (PY, prog, *template)
    _, trial = ask({"c": NASTY, "x": 0.5})
    CommandObjective(command, space_names=["c", "x"], shell=shell, workdir=tmp_path)(trial)
    argv = json.loads(Path(prog + ".argv").read_text())
    assert argv == [f"--c={NASTY}", NASTY, "{literal}", "0.50"]
    assert not (tmp_path / "pwned").exists()


def test_environment_carries_params_trial_number_and_extra_env(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        say(value=0, p=json.loads(os.environ["DASKOPT_PARAMS"]), n=os.environ["DASKOPT_TRIAL_NUMBER"],
            extra=os.environ["EXTRA"], cwd=os.getcwd())
        """,
    )
    _, trial = ask({"x": 0.25, "c": "b"})
    handle = Proxy(trial)
    objective(prog, space_names=["x", "c"], extra_env={"EXTRA": "yes"}, workdir=tmp_path)(handle)  # type: ignore[arg-type]
    logged, _ = handle.logged[0]
    assert logged == {"p": {"x": 0.25, "c": "b"}, "n": str(trial.number), "extra": "yes", "cwd": str(tmp_path)}


@pytest.mark.parametrize(
    ("command", "shell", "fragment"),
    [
        ((PY, "t.py", "--lr={lr}"), False, "placeholder {lr} in '--lr={lr}' names no parameter; valid names: c, x"),
        ((PY, "t.py", "{}"), False, "placeholder {}"),
        ((PY, "t.py", "{x.real}"), False, "placeholder {x.real}"),
        ((PY, "t.py", "{x:{width}}"), False, "placeholder {width}"),
        ((PY, "t.py", "{x"), False, "write literal braces as {{ and }}"),
        ("python t.py {lr}", True, "placeholder {lr}"),
        ("python t.py {x}", False, "or shell=True to run it in a shell"),
        ((PY, "t.py"), True, "expected one command line string"),
        ((), False, "non-empty tuple"),
    ],
)
def test_bad_command_is_a_spec_error(command: Any, shell: bool, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        CommandObjective(command, space_names=["x", "c"], shell=shell)
    assert info.value.key == "objective.command"
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            'say(step=0, value=1)\nprint("first", file=sys.stderr)\nprint("boom", file=sys.stderr)\nsys.exit(3)\n',
            "command exited with code 3; last stderr line: boom",
        ),
        ("os.kill(os.getpid(), signal.SIGKILL)\n", "command was killed by SIGKILL"),
        ('print("hello")\n', "command printed no `daskopt: {...}` line with 'value'; see the protocol in docs/"),
        ('print("ok")\nprint("daskopt: {not json")\n', "stdout line 2 is a malformed `daskopt:` line (invalid JSON"),
        ('print("daskopt: [1, 2]")\n', "expected a JSON object, got list"),
        ('say(step=1, value="high")\n', "'value' must be a number, got 'high'"),
        ("say(step=-1, value=1)\n", '"step" must be a non-negative integer'),
        ('print("daskopt: {" + "1" * 500)\n', "..."),
    ],
)
def test_failures_raise_command_failed(tmp_path: Path, body: str, fragment: str) -> None:
    _, trial = ask({"x": 1})
    with pytest.raises(CommandFailed) as info:
        objective(script(tmp_path, body))(trial)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_log_dir_keeps_stdout_and_stderr_per_trial(tmp_path: Path) -> None:
    prog = script(tmp_path, 'print("plain output")\nprint("warn", file=sys.stderr)\nsay(value=1)\n')
    _, trial = ask({"x": 1})
    objective(prog, log_dir=tmp_path / "logs")(trial)
    stdout = (tmp_path / "logs" / f"trial-{trial.number}.stdout").read_text()
    assert stdout == 'plain output\ndaskopt: {"value": 1}\n'
    assert (tmp_path / "logs" / f"trial-{trial.number}.stderr").read_text() == "warn\n"


KILLABLE = """
child = subprocess.Popen([sys.executable, "-c", CHILD])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
say(step=0, value=1.0)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; an unreaped zombie (its parent died first) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


GRACE_S = 4.0  # long against starting two interpreters on a slow machine, so only an ignored SIGTERM reaches it


@pytest.mark.parametrize(
    ("how", "ignore_term"),
    [("prune", False), ("prune", True), ("interrupt", False)],
)
def test_stopping_kills_the_whole_process_group(tmp_path: Path, how: str, ignore_term: bool) -> None:
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else ""
    child = f"import signal, time\n{ignore}time.sleep(60)"
    prog = script(tmp_path, f"{ignore}CHILD = {child!r}\n{KILLABLE}")
    pids = tmp_path / "pids"
    _, trial = ask({"x": 1}, pruner=optuna.pruners.ThresholdPruner(upper=0.5))

    def interrupt(step: int) -> None:
        raise KeyboardInterrupt

    handle = Proxy(trial, on_report=interrupt if how == "interrupt" else None)
    expected = KeyboardInterrupt if how == "interrupt" else optuna.TrialPruned
    started = time.monotonic()
    with pytest.raises(expected):
        objective(prog, str(pids), grace_period=GRACE_S)(handle)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 3
    while any(alive(int(pid)) for pid in pids.read_text().split()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(alive(int(pid)) for pid in pids.read_text().split())
    assert (elapsed >= GRACE_S) == ignore_term  # SIGKILL waits for the grace period only when SIGTERM is ignored


def test_objective_survives_pickling(tmp_path: Path) -> None:
    prog = script(tmp_path, "say(value=float(sys.argv[1]))\n")
    copy = pickle.loads(pickle.dumps(objective(prog, "{x}", log_dir=tmp_path / "logs")))
    _, trial = ask({"x": 0.75})
    assert copy(trial) == 0.75


def test_python_missing_from_path_means_the_workers_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no python anywhere on PATH
    objective = CommandObjective(("python", "-c", "print(1)"), space_names=["x"])
    assert objective.argv({"x": 1})[0] == sys.executable
    assert CommandObjective(("ls", "-l"), space_names=["x"]).argv({"x": 1})[0] == "ls"
