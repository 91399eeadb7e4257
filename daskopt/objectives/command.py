"""Command-line objectives: run a program per trial and read its results from ``daskopt:`` stdout lines.

The program gets the trial's parameters as separate arguments (never through a shell unless asked for)
and in ``DASKOPT_PARAMS``; it prints ``daskopt: {"step": 3, "val_acc": 0.91}`` to report and
``daskopt: {"value": 0.93}`` to finish. Reports are read while the program runs, so the study's pruner
judges them live; a pruned program is stopped with its whole process group (SIGTERM, then SIGKILL after
``grace_period``), because training scripts commonly fork data loaders that would otherwise keep a GPU busy.
The protocol for users is in ``docs/command-protocol.md``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import optuna

from daskopt.errors import SpecError

PREFIX = "daskopt:"
PROTOCOL_DOC = "docs/command-protocol.md"
_SHOWN_CHARS = 200
_POLL_S = 0.05


class CommandFailed(RuntimeError):
    """The program failed (non-zero exit), broke the protocol, or never said its result.

    A ``RuntimeError`` so that the study records the trial as FAIL with this one-line message, like any
    other objective that raises.
    """


@dataclass(frozen=True)
class Message:
    """One parsed ``daskopt:`` line: a report when ``step`` is set, else a final value (when ``value`` is)."""

    step: int | None
    value: float | None
    extras: dict[str, Any] = field(default_factory=dict)


class CommandObjective:
    """An objective that runs ``command`` for each trial; picklable, so Dask ships it to workers.

    ``command`` is a tuple of arguments (each ``{name}`` placeholder is filled inside its own argument, so a
    value is always exactly one argument) or, with ``shell=True``, one shell line (values are shell-quoted;
    put placeholders outside quotes). ``{{``/``}}`` are literal braces; format specs such as ``{lr:.3g}``
    work. ``metric`` is the key that carries the reported value. ``workdir`` and ``log_dir`` are paths on
    the worker; relative ones are relative to the worker's working directory.
    """

    def __init__(
        self,
        command: str | tuple[str, ...],
        *,
        space_names: Collection[str],
        metric: str = "value",
        shell: bool = False,
        workdir: str | Path = ".",
        grace_period: float = 10.0,
        log_dir: str | Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = _checked_command(command, shell)
        self.space_names = frozenset(space_names)
        for template in (self.command,) if isinstance(self.command, str) else self.command:
            _check_placeholders(template, self.space_names)
        if not isinstance(metric, str) or not metric or metric == "step":
            raise SpecError(
                f'got {metric!r}; expected a non-empty key other than "step", e.g. "val_acc"', key="objective.metric"
            )
        if not isinstance(grace_period, (int, float)) or not grace_period >= 0:
            raise SpecError(f"got {grace_period!r}; expected seconds >= 0, e.g. 10", key="objective.grace_period")
        self.metric = metric
        self.shell = shell
        self.workdir = Path(workdir)
        self.grace_period = float(grace_period)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.extra_env = dict(extra_env or {})

    def __repr__(self) -> str:
        shown = self.command if isinstance(self.command, str) else shlex.join(self.command)
        return f"CommandObjective({shown!r}, metric={self.metric!r}, shell={self.shell})"

    def argv(self, params: Mapping[str, Any]) -> str | list[str]:
        """The command with ``params`` filled in, ready for ``subprocess.Popen``."""
        if isinstance(self.command, str):
            return fill(self.command, params, quote=True)
        argv = [fill(part, params, quote=False) for part in self.command]
        return [_program(argv[0]), *argv[1:]]

    def env(self, params: Mapping[str, Any], number: int) -> dict[str, str]:
        """The program's environment: the worker's, the trial's (its GPUs, see :mod:`daskopt.gpu`), then
        ``extra_env`` (which wins)."""
        from daskopt.gpu.trial import trial_env

        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",  # Python programs' reports would otherwise wait for a full pipe buffer
            "DASKOPT_PARAMS": json.dumps(dict(params), default=str),
            "DASKOPT_TRIAL_NUMBER": str(number),
            **trial_env(),
            **self.extra_env,
        }

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        params = trial.params
        number = trial.number
        with _output_files(self.log_dir, number) as (stdout_log, stderr_file):
            proc = subprocess.Popen(
                self.argv(params),
                shell=self.shell,
                cwd=self.workdir,
                env=self.env(params, number),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,  # its own process group, so pruning stops its children too
            )
            try:
                final, last_report = self._follow(proc, trial, stdout_log)
                returncode = proc.wait()
            finally:
                terminate_group(proc, self.grace_period)
                if proc.stdout is not None:
                    proc.stdout.close()
            if returncode != 0:
                raise CommandFailed(f"{_exit_text(returncode)}; last stderr line: {_last_line(stderr_file)}")
        result = final if final is not None else last_report
        if result is None:
            raise CommandFailed(
                f"command printed no `{PREFIX} {{...}}` line with {self.metric!r}; see the protocol in {PROTOCOL_DOC}"
            )
        return result

    def _follow(
        self, proc: subprocess.Popen[str], trial: optuna.trial.BaseTrial, stdout_log: IO[str] | None
    ) -> tuple[float | None, float | None]:
        """Read stdout as it comes; report, log and prune. Returns (final value, last reported value)."""
        log = getattr(trial, "log", None)
        final: float | None = None
        last_report: float | None = None
        assert proc.stdout is not None
        for lineno, line in enumerate(proc.stdout, start=1):
            if stdout_log is not None:
                stdout_log.write(line)
            message = parse_line(line, lineno, self.metric)
            if message is None:
                continue
            if message.extras and callable(log):
                log(message.extras, step=message.step)
            if message.value is None:
                continue
            if message.step is None:
                final = message.value
                continue
            last_report = message.value
            trial.report(message.value, message.step)
            if trial.should_prune():
                terminate_group(proc, self.grace_period)
                raise optuna.TrialPruned(f"pruned at step {message.step}")
        return final, last_report


def parse_line(line: str, lineno: int, metric: str) -> Message | None:
    """The message on one stdout line, or ``None`` for ordinary output; raises CommandFailed when malformed."""
    line = line.rstrip("\r\n")
    if not line.startswith(PREFIX):
        return None
    try:
        obj = json.loads(line[len(PREFIX) :])
    except ValueError as err:
        raise _malformed(lineno, line, f"invalid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise _malformed(lineno, line, f"expected a JSON object, got {type(obj).__name__}")
    step = obj.pop("step", None)
    if step is not None:
        step = _step(step, lineno, line)
    key = metric if metric in obj else "value" if step is None and "value" in obj else None
    value = None if key is None else _number(obj.pop(key), key, lineno, line)
    return Message(step=step, value=value, extras=obj)


def _program(name: str) -> str:
    """``python``/``python3`` missing from the worker's PATH (a venv not activated, a system without a
    ``python``) means the worker's own interpreter; any other program is looked up as given."""
    if name in ("python", "python3") and shutil.which(name) is None:
        return sys.executable
    return name


def fill(template: str, params: Mapping[str, Any], *, quote: bool) -> str:
    """``template`` with each ``{name}`` replaced by the parameter's value (shell-quoted when ``quote``)."""
    formatter = string.Formatter()
    parts: list[str] = []
    for literal, name, spec, conversion in formatter.parse(template):
        parts.append(literal)
        if name is None:
            continue
        if name not in params:
            raise CommandFailed(
                f"the command uses {{{name}}}, but the trial has no such parameter (it has: {', '.join(params)}); "
                "declare it in the search space"
            )
        value = formatter.convert_field(params[name], conversion)
        try:
            text = formatter.format_field(value, formatter.vformat(spec or "", (), params))
        except (ValueError, TypeError) as err:
            raise SpecError(
                f"cannot format {name}={value!r} with {{{name}:{spec}}} ({err}); fix the format spec or drop it",
                key="objective.command",
            ) from None
        parts.append(shlex.quote(text) if quote else text)
    return "".join(parts)


def terminate_group(proc: subprocess.Popen[Any], grace_period: float) -> None:
    """Stop ``proc``'s process group: SIGTERM, up to ``grace_period`` s to exit, then SIGKILL; reap ``proc``.

    ``proc`` must lead its own group (``start_new_session=True``). Returns at once when the leader has
    exited and no member of its group is left, so it is cheap to call again (from a ``finally``).
    """
    pgid = proc.pid
    if proc.poll() is not None and not _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_period
    while time.monotonic() < deadline and (proc.poll() is None or _group_alive(pgid)):
        time.sleep(_POLL_S)
    _signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _checked_command(command: Any, shell: bool) -> str | tuple[str, ...]:
    if shell:
        if isinstance(command, str) and command.strip():
            return command
        raise SpecError(
            f'got {command!r} with shell=True; expected one command line string, e.g. "python train.py --lr {{lr}}"',
            key="objective.command",
        )
    if isinstance(command, (tuple, list)) and command and all(isinstance(part, str) for part in command):
        return tuple(command)
    if isinstance(command, str):
        hint = f"pass a tuple of arguments, e.g. {tuple(shlex.split(command))!r}, or shell=True to run it in a shell"
    else:
        hint = 'pass a non-empty tuple of argument strings, e.g. ("python", "train.py", "--lr={lr}")'
    raise SpecError(f"got {command!r}; {hint}", key="objective.command")


def _check_placeholders(template: str, names: frozenset[str]) -> None:
    valid = ", ".join(sorted(names)) or "none (the search space is empty)"
    try:
        fields = [(name, spec) for _, name, spec, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise SpecError(
            f"got {template!r}, which is not a valid template ({err}); write literal braces as {{{{ and }}}}",
            key="objective.command",
        ) from None
    for name, spec in fields:
        nested = [inner for _, inner, _, _ in string.Formatter().parse(spec or "") if inner is not None]
        for placeholder in (name, *nested):
            if placeholder not in names:
                raise SpecError(
                    f"placeholder {{{placeholder}}} in {template!r} names no parameter; valid names: {valid}",
                    key="objective.command",
                )


def _step(step: Any, lineno: int, line: str) -> int:
    if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
        return step
    if isinstance(step, float) and step.is_integer() and step >= 0:
        return int(step)
    raise _malformed(lineno, line, f'"step" must be a non-negative integer, got {step!r}')


def _number(value: Any, key: str, lineno: int, line: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # "nan", "inf" and numbers a program printed as strings
        except ValueError:
            pass
    raise _malformed(lineno, line, f"{key!r} must be a number, got {value!r}")


def _malformed(lineno: int, line: str, reason: str) -> CommandFailed:
    shown = line if len(line) <= _SHOWN_CHARS else line[:_SHOWN_CHARS] + "..."
    return CommandFailed(
        f"stdout line {lineno} is a malformed `{PREFIX}` line ({reason}): {shown!r}; "
        f'expected e.g. `{PREFIX} {{"step": 3, "value": 0.91}}`, see {PROTOCOL_DOC}'
    )


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"command was killed by {name} (exit code {returncode})"
    return f"command exited with code {returncode}"


def _last_line(stderr_file: IO[bytes]) -> str:
    """The last non-empty line of the program's stderr (read from the end: stderr may be large)."""
    stderr_file.flush()
    size = stderr_file.seek(0, os.SEEK_END)
    stderr_file.seek(max(0, size - 4096))
    lines = [line.strip() for line in stderr_file.read().decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return "(stderr was empty)"
    last = lines[-1]
    return last if len(last) <= _SHOWN_CHARS else last[:_SHOWN_CHARS] + "..."


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_running_member(pgid)


def _has_running_member(pgid: int) -> bool:
    """Whether a group member is more than a zombie (Linux ``/proc``; elsewhere assume so).

    ``killpg(pgid, 0)`` also finds zombies, and orphaned children may stay zombies for good where PID 1
    does not reap (containers without an init): without this check every prune would wait out the grace.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):  # fields: state, ppid, pgrp, ...
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def _output_files(log_dir: Path | None, number: int) -> Iterator[tuple[IO[str] | None, IO[bytes]]]:
    """Where stdout lines are copied and stderr goes: ``log_dir/trial-N.*``, or a temporary stderr file only.

    stderr goes to a file, never a pipe: nobody reads a pipe while stdout is followed, so a chatty
    program would block on a full pipe; the file also gives the last stderr line for error messages.
    """
    with ExitStack() as stack:
        if log_dir is None:
            yield None, stack.enter_context(tempfile.TemporaryFile())
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        stderr = stack.enter_context(open(log_dir / f"trial-{number}.stderr", "w+b"))
        stdout = stack.enter_context(open(log_dir / f"trial-{number}.stdout", "w", encoding="utf-8", buffering=1))
        yield stdout, stderr


__all__ = ["CommandFailed", "CommandObjective", "Message", "fill", "parse_line", "terminate_group"]
