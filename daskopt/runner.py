"""Run a study described by a study file: open or resume its storage, run it on its cluster, write outputs.

Resuming is the same command as starting: trials left RUNNING by a driver that died are marked FAIL
(``fail_reason`` says so) and their parameters re-enqueued, ``[[enqueue]]`` points already in the study
are not added again, and the call runs until the study holds ``n_trials`` outcomes.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from daskopt.api import optimize
from daskopt.cluster import adaptive_slots, open_client
from daskopt.errors import SpecError, first_line
from daskopt.factory import make_pruner, make_sampler, make_storage, storage_file
from daskopt.objectives.python import load_callable
from daskopt.space import to_distributions
from daskopt.spec import StudySpec
from daskopt.tracking import spec_wandb_option

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_NOT_IN_CSV = {"fail_reason", "traceback"}  # fail_reason has its own column; tracebacks are multi-line


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


@dataclass(frozen=True)
class RunReport:
    study: optuna.Study
    ran: int
    recovered: int
    first_number: int  # trials numbered from here on were created by this run


def open_study(spec: StudySpec, *, create: bool) -> optuna.Study:
    """The study the file names, created if ``create``; its directions must match the file's.

    Whatever the storage itself refuses (a database driver not installed, a server that does not answer,
    a file that is not a journal) is a :class:`SpecError` on ``storage.url``: one line, not a traceback.
    """
    try:
        return _open_study(spec, create=create)
    except (SpecError, KeyboardInterrupt):
        raise
    except Exception as exc:
        first = first_line(exc, type(exc).__name__, limit=300)
        raise SpecError(f"cannot open {spec.storage.url}: {type(exc).__name__}: {first}", key="storage.url") from None


def _open_study(spec: StudySpec, *, create: bool) -> optuna.Study:
    file = storage_file(spec.storage.url)
    if not create and file is not None and not file.exists():  # reading must not create the file
        raise SpecError(f"{file} does not exist; start the study with `daskopt run`", key="storage.url")
    storage = make_storage(spec.storage.url)
    distributions = to_distributions(spec.space)
    sampler, pruner = make_sampler(spec.sampler, distributions), make_pruner(spec.pruner)
    name = spec.study.name
    if not create:
        if storage is None:
            raise SpecError(
                "an in-memory study does not outlive its run; use a journal or database url", key="storage.url"
            )
        try:
            return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            raise SpecError(
                f"no study named {name!r} in {spec.storage.url}; start it with `daskopt run`", key="study.name"
            ) from None
    directions = list(spec.study.directions)
    study: optuna.Study | None = None
    if storage is not None:  # load first: Optuna's journal storage appends a create record even when the
        try:  # study exists, and a refused run (directions below) must leave the storage as it was
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        except KeyError:
            pass
    if study is not None:
        study.sampler = _resumed_sampler(spec, distributions, len(study.get_trials(deepcopy=False)))
    if study is None:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions,
            load_if_exists=True,
        )
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise SpecError(
            f"the stored study {name!r} optimizes {stored}, the file says {directions}; "
            "use a new study name or storage to change directions",
            key="study.direction",
        )
    return study


def _resumed_sampler(spec: StudySpec, distributions: Any, n_stored: int) -> optuna.samplers.BaseSampler:
    """The file's sampler for a study that already holds trials. A seeded sampler rebuilt with the same seed
    would restart its random stream and propose stored points again, so its seed is offset by the number of
    stored trials: still reproducible, never a replay."""
    seed = spec.sampler.options.get("seed")
    if n_stored == 0 or not isinstance(seed, int):
        return make_sampler(spec.sampler, distributions)
    section = spec.sampler.model_copy(update={"options": {**spec.sampler.options, "seed": seed + n_stored}})
    return make_sampler(section, distributions)


def recover_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a dead driver as FAIL and re-enqueue their parameters."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted: the driver stopped")
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("fail_reason", "traceback")}
        checkpoint = int(trial.user_attrs.get("checkpoint_of", trial.number))
        study.enqueue_trial(
            dict(trial.params), user_attrs={**attrs, "retry_of": trial.number, "checkpoint_of": checkpoint}
        )
    return len(stale)


def outcomes(study: optuna.Study) -> int:
    """Finished trials that count toward ``n_trials``: attempts that were retried, and trials asked ahead
    that a stop closed before they ran, are not outcomes."""
    trials = study.get_trials(deepcopy=False)
    replaced = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return sum(t.state in FINISHED and t.number not in replaced and not t.user_attrs.get("not_started") for t in trials)


def make_objective(spec: StudySpec) -> Callable[..., Any]:
    section = spec.objective
    if section.callable:
        return load_callable(section.callable, Path(section.workdir))
    from daskopt.objectives.command import CommandObjective

    if section.command is None:  # the spec guarantees one of the two; say so rather than assume
        raise SpecError("set callable or command", key="objective")
    return CommandObjective(
        section.command,
        space_names=list(spec.space),
        metric=section.metric,
        shell=section.shell,
        workdir=section.workdir,
        grace_period=section.grace_period,
        log_dir=Path(spec.output.dir) / "logs",
    )


def check_output_dir(spec: StudySpec) -> Path:
    out = Path(spec.output.dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".daskopt-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SpecError(f"cannot write to {out}: {exc.strerror or exc}", key="output.dir") from None
    return out


def run_study(
    spec: StudySpec,
    objective: Callable[..., Any] | None = None,
    *,
    n_trials: int | None = None,
    address: str | None = None,
) -> RunReport:
    """Validate everything that can be checked without the cluster, then run. Returns what was done."""
    objective = objective or make_objective(spec)
    out = check_output_dir(spec)
    distributions = to_distributions(spec.space)
    target = n_trials if n_trials is not None else spec.study.n_trials
    board = spec.dashboard
    dashboard = {"host": board.host, "port": board.port} if board.enabled else None
    if dashboard:
        from daskopt.dashboard import register_dask_page

        register_dask_page()  # before a local scheduler starts, so its "More" menu lists the page
    with open_client(spec.cluster, address) as client:  # first: a cluster that fails leaves no study behind
        study = open_study(spec, create=True)
        first_number = len(study.get_trials(deepcopy=False))
        recovered = recover_interrupted(study)
        for point in spec.enqueue:
            study.enqueue_trial(dict(point), skip_if_exists=True)
        remaining = None if target is None else max(0, target - outcomes(study))
        if remaining != 0:
            try:
                optimize(
                    study,
                    objective,
                    n_trials=remaining,
                    timeout=spec.study.timeout,
                    hard_timeout=spec.study.hard_timeout,
                    client=client,
                    max_retries=spec.study.max_retries,
                    fail_fast=spec.study.fail_fast or None,
                    trial_timeout=spec.objective.trial_timeout,
                    search_space=distributions or None,
                    repeats=spec.study.repeats,
                    seed_base=spec.study.seed_base,
                    report_last_n=spec.study.report_last_n,
                    scheduler_grace_s=spec.cluster.scheduler_grace,
                    n_concurrent=None if address else adaptive_slots(spec.cluster),
                    gpus_per_trial=spec.cluster.gpus_per_trial if spec.cluster.uses_gpu else None,
                    gpu_memory_fraction=spec.cluster.gpu_memory_fraction,
                    wandb=spec_wandb_option(spec.wandb, spec.objective.metric),
                    output_dir=out,
                    checkpoint_dir=out / "checkpoints",
                    dashboard=dashboard,
                )
            finally:
                write_outputs(study, out)
        else:
            write_outputs(study, out)
    return RunReport(study=study, ran=remaining or 0, recovered=recovered, first_number=first_number)


def run_failed(report: RunReport) -> str | None:
    """Why the run counts as failed (every outcome it produced is FAIL, or it had nothing left to run in a
    study where nothing ever completed), or ``None``."""
    everything = report.study.get_trials(deepcopy=False)
    trials = everything[report.first_number :]
    finished = [t for t in trials if t.state in FINISHED and not t.user_attrs.get("not_started")]
    if not finished and report.ran == 0 and not any(t.state == TrialState.COMPLETE for t in everything):
        held = outcomes(report.study)
        return (
            f"nothing to run: the study already holds {held} outcome(s) and none completed; raise n_trials "
            "(--n-trials) to try again, or use a new study name"
        )
    if not finished or any(t.state != TrialState.FAIL for t in finished):
        return None
    reason = finished[0].user_attrs.get("fail_reason", "no reason recorded")
    return f"all {len(finished)} trial(s) of this run failed; the first: {reason}"


def best_summary(study: optuna.Study) -> dict[str, Any] | list[dict[str, Any]] | None:
    """Best trial (or the Pareto front for several objectives) as plain JSON data."""

    def describe(trial: FrozenTrial) -> dict[str, Any]:
        value: Any = trial.values if len(study.directions) > 1 else trial.value
        return {"number": trial.number, "value": value, "params": trial.params}

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if len(study.directions) > 1:
        return [describe(t) for t in study.best_trials]
    return describe(study.best_trial)


def write_outputs(study: optuna.Study, out: Path) -> None:
    """``best.json`` and ``trials.csv`` in the output folder (rewritten whole, so always consistent)."""
    (out / "best.json").write_text(json.dumps(best_summary(study), indent=2) + "\n")
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    attrs = sorted({k for t in trials for k, v in t.user_attrs.items() if k not in _NOT_IN_CSV and _scalar(v)})
    n_values = len(study.directions)
    value_cols = ["value"] if n_values == 1 else [f"value_{i}" for i in range(n_values)]
    tmp = out / "trials.csv.tmp"
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["number", "state", *value_cols, *[f"params_{p}" for p in params], *[f"user_attrs_{a}" for a in attrs]]
            + ["duration_s", "fail_reason"]
        )
        for t in trials:
            values = list(t.values) if t.values is not None else [None] * n_values
            duration = t.duration.total_seconds() if t.duration is not None else None
            reason = t.user_attrs.get("fail_reason", "")
            extra = [t.user_attrs.get(a) if _scalar(t.user_attrs.get(a)) else None for a in attrs]
            row = [t.number, t.state.name, *values, *[t.params.get(p) for p in params], *extra, duration, reason]
            writer.writerow(["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row])
    tmp.replace(out / "trials.csv")
