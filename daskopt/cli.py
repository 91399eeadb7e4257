"""``daskopt run|status|best FILE`` and ``daskopt dashboard FILE|STORAGE_URL``: parse, call the library,
turn the outcome into an exit code.

Exit codes: 0 ok, 1 the study failed, 2 bad input (one line on stderr, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

import click

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _OneLineExceptions(logging.Filter):
    """Libraries (distributed) log tracebacks on expected events such as a lost scheduler; the CLI
    promises one-line messages, so a logged exception is folded into its record's line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            summary = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            record.msg, record.args = f"{record.getMessage().strip()} [{summary}]".strip(), None
            record.exc_info, record.exc_text = None, None
        return True


def _one_line_logs() -> None:
    for name in ("", "distributed", "tornado", "asyncio"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _OneLineExceptions) for f in handler.filters):
                handler.addFilter(_OneLineExceptions())


def _printable(text: str) -> str:
    """``text`` with non-printable characters escaped: a key or value from the file may hold a line break
    (``"\\n"``, U+0085, U+2028) or a terminal escape, and the error must stay one harmless line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _fail(message: str, code: int) -> None:
    click.echo(f"daskopt: error: {_printable(message)}", err=True)
    sys.exit(code)


def _exit_codes(command: Callable[..., Any]) -> Callable[..., Any]:
    """Map daskopt's errors to exit codes and one-line messages."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from daskopt.errors import ClusterError, ObjectiveError, SchedulerLost, SpecError

        try:
            return command(*args, **kwargs)
        except (SpecError, ClusterError) as err:
            _fail(str(err), EXIT_BAD_INPUT)
        except SchedulerLost as err:
            _fail(str(err), EXIT_FAILED)
        except ObjectiveError as err:
            where = _traceback_hint(kwargs.get("study_file"), err.trial_number)
            _fail(f"{err} (the study stopped; finished trials are kept{where})", EXIT_FAILED)
        except KeyboardInterrupt:
            click.echo("daskopt: interrupted; finished trials are kept, run the same command to resume", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


def _traceback_hint(study_file: str | None, trial: int | None) -> str:
    """Where a failed trial's traceback can be read (it is stored with the trial)."""
    if study_file is None or trial is None:
        return ""
    return f"; its traceback: daskopt status {shlex.quote(study_file)} --trial {trial}"


def _load(path: str) -> Any:
    from daskopt.spec import load_spec

    return load_spec(path)


@contextlib.contextmanager
def _against(study_file: str) -> Iterator[None]:
    """Name ``study_file`` in the errors of the file's settings found after loading it (the objective's
    import, the storage it names, the directions stored there)."""
    from daskopt.errors import SpecError

    try:
        yield
    except SpecError as err:
        if err.source is None:
            raise SpecError(err.detail, source=study_file, key=err.key) from None
        raise


def _objective(spec: Any, study_file: str) -> Any:
    """Import (or build) the objective now: a broken one is bad input, reported against the file."""
    from daskopt.runner import make_objective

    with _against(study_file):
        return make_objective(spec)


def _stored_study(study_file: str) -> Any:
    """The study STUDY_FILE names, read from its storage (never created)."""
    from daskopt.runner import open_study

    with _against(study_file):
        return open_study(_load(study_file), create=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="daskopt")
def main() -> None:
    """Asynchronous, distributed hyperparameter optimization on Dask."""
    import distributed  # noqa: F401  (installs its log handlers, which get the one-line filter)
    import optuna

    _one_line_logs()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # daskopt prints the study, storage and progress itself


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--n-trials", type=click.IntRange(min=1), help="Outcomes the study should hold (overrides the file).")
@click.option("--address", help="Run on the Dask scheduler at this address instead of the file's cluster.")
@click.option("--dry-run", is_flag=True, help="Validate, print the resolved study and the cluster, run nothing.")
@_exit_codes
def run(study_file: str, n_trials: int | None, address: str | None, dry_run: bool) -> None:
    """Run (or resume) the study described by STUDY_FILE."""
    spec = _load(study_file)
    objective = _objective(spec, study_file)
    if dry_run:
        click.echo(json.dumps(spec.model_dump(mode="json", warnings=False), indent=2, default=str))
        kind = "address" if address else spec.cluster.kind
        click.echo(f"cluster: {kind}" + (f" at {address or spec.cluster.address}" if kind == "address" else ""))
        return
    from daskopt.runner import best_summary, run_failed, run_study

    click.echo(f"daskopt: study {spec.study.name!r} in {spec.storage.url}; outputs in {spec.output.dir}", err=True)
    from daskopt.runner.storage import open_elsewhere

    with _against(study_file):
        report = run_study(spec, objective, n_trials=n_trials, address=address)
    for line in open_elsewhere(spec.storage.url, spec.study.name):  # once the storage holds the study
        click.echo(line, err=True)
    if report.recovered:
        click.echo(f"daskopt: {report.recovered} interrupted trial(s) marked FAIL and re-enqueued", err=True)
    _print_counts(report.study)
    best = best_summary(report.study)
    click.echo(json.dumps(best, indent=2) if best is not None else "no completed trial yet")
    failure = run_failed(report)
    if failure:
        first = re.search(r"\(trial (\d+)\)", failure)
        _fail(failure + _traceback_hint(study_file, int(first.group(1)) if first else None), EXIT_FAILED)


@main.command()
@click.argument("study_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--trial", "number", type=int, help="Show this trial: state, parameters, values, its error and traceback."
)
@_exit_codes
def status(study_file: str, number: int | None) -> None:
    """Counts by state, best so far and running trials of STUDY_FILE's study (or one trial, with --trial)."""
    from optuna.trial import TrialState

    from daskopt.runner import best_summary
    from daskopt.runner.storage import open_elsewhere

    study = _stored_study(study_file)
    if number is not None:
        _print_trial(study, number)
        return
    spec = _load(study_file)
    for line in open_elsewhere(spec.storage.url, spec.study.name):
        click.echo(line.removeprefix("daskopt: "))
    _print_counts(study, err=False)
    best = best_summary(study)
    click.echo(f"best: {json.dumps(best)}" if best is not None else "best: no completed trial yet")
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("suspended"):  # paused by a scheduler: RUNNING in storage, not on a worker
            click.echo(f"paused: trial {trial.number} at step {trial.user_attrs['paused_at'][-1]} {trial.params}")
        else:
            click.echo(f"running: trial {trial.number} since {trial.datetime_start:%Y-%m-%d %H:%M:%S} {trial.params}")


def _print_trial(study: Any, number: int) -> None:
    """One trial in full: what ``status --trial N`` prints (the traceback is stored as a user attribute)."""
    from daskopt.attributes import FAIL_REASON, TRACEBACK

    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        _fail(f"--trial: the study has trials 0 to {len(trials) - 1}, got {number}", EXIT_BAD_INPUT)
    trial = trials[number]
    click.echo(f"trial {trial.number}: {trial.state.name}")
    click.echo(f"params: {json.dumps(trial.params, default=str)}")
    if trial.values is not None:
        click.echo(f"values: {trial.values}")
    shown = {k: v for k, v in trial.user_attrs.items() if k not in (FAIL_REASON, TRACEBACK)}
    if shown:
        click.echo(f"user_attrs: {json.dumps(shown, default=str)}")
    if FAIL_REASON in trial.user_attrs:
        click.echo(f"error: {trial.user_attrs[FAIL_REASON]}")
    if TRACEBACK in trial.user_attrs:
        click.echo(str(trial.user_attrs[TRACEBACK]).rstrip())


@main.command()
@click.argument("study_file", type=click.Path(exists=True, dir_okay=False))
@_exit_codes
def best(study_file: str) -> None:
    """Best parameters of STUDY_FILE's study as JSON (the Pareto front for several objectives)."""
    from daskopt.runner import best_summary

    summary = best_summary(_stored_study(study_file))
    if summary is None:
        _fail("the study has no completed trial yet", EXIT_FAILED)
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.argument("source", metavar="FILE|STORAGE_URL")
@click.option("--study", "study_name", help="Study name (needed when the storage holds several).")
@click.option("--host", help="Interface to listen on (default: the file's [dashboard] host, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: the file's, else 0 = a free one).")
@_exit_codes
def dashboard(source: str, study_name: str | None, host: str | None, port: int | None) -> None:
    """Serve the live page of a study running elsewhere (or finished), read from its storage."""
    from pathlib import Path

    from daskopt.dashboard import serve_storage

    n_trials = None
    if Path(source).is_file():  # a study file: its storage, name, target and [dashboard] settings
        spec = _load(source)
        source, study_name = spec.storage.url, study_name or spec.study.name
        n_trials, host = spec.study.n_trials, host or spec.dashboard.host
        port = spec.dashboard.port if port is None else port

    def ready(url: str) -> None:
        click.echo(f"daskopt: dashboard at {url} (Ctrl-C to stop)", err=True)

    try:
        serve_storage(source, study_name, host or "127.0.0.1", port or 0, n_trials=n_trials, on_ready=ready)
    except KeyboardInterrupt:
        click.echo("daskopt: dashboard stopped", err=True)


def _print_counts(study: Any, *, err: bool = True) -> None:
    """Trials by state: a summary on stderr after ``run``, the output itself of ``status``."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    text = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "no trials"
    click.echo(f"study {study.study_name!r}: {text}", err=err)


if __name__ == "__main__":
    main()
