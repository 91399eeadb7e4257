"""Run a study file: open or resume its storage, run it on its cluster, write its outputs.

Resuming is the same command as starting (:mod:`.recovery`); ``[[enqueue]]`` points already in the study
are not added again, and the call runs until the study holds ``n_trials`` outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from daskopt.api import optimize
from daskopt.attributes import FAIL_REASON, FINISHED, NOT_STARTED
from daskopt.cluster import adaptive_slots, open_client
from daskopt.factory import make_scheduler
from daskopt.runner.objective import make_objective
from daskopt.runner.outputs import check_output_dir, write_outputs
from daskopt.runner.recovery import outcomes, recover_interrupted
from daskopt.runner.storage import open_study
from daskopt.settings import Dashboard, Elastic, Failures, Resources, Timeout, Tracking, TrialOptions
from daskopt.space import to_distributions
from daskopt.spec import StudySpec
from daskopt.tracking import spec_wandb_option, study_ends_overlapped, tracking_settings, warm_up


@dataclass(frozen=True)
class RunReport:
    study: optuna.Study
    ran: int
    recovered: int
    first_number: int  # trials numbered from here on were created by this run


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
    dashboard = Dashboard(host=board.host, port=board.port) if board.enabled else None
    if dashboard:
        from daskopt.dashboard import register_dask_page

        register_dask_page()  # before a local scheduler starts, so its "More" menu lists the page
    settings = settings_from_spec(spec, out)
    tracking = settings["tracking"]
    # W&B's start-up in this process runs while the cluster starts (optimize() warms the workers)
    warm_up(tracking_settings(spec.study.name, wandb=tracking.wandb, output_dir=tracking.output_dir))
    # the cluster first: a cluster that fails leaves no study behind; W&B's study run finishes while it closes
    with study_ends_overlapped(), open_client(spec.cluster, address, elastic=spec.elastic) as client:
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
                    client=client,
                    n_concurrent=None if address else adaptive_slots(spec.cluster),
                    search_space=distributions or None,
                    dashboard=dashboard,
                    channel=spec.cluster.channel,
                    **settings,
                )
            finally:
                write_outputs(study, out)
        else:
            write_outputs(study, out)
    return RunReport(study=study, ran=remaining or 0, recovered=recovered, first_number=first_number)


def settings_from_spec(spec: StudySpec, out: Path) -> dict[str, Any]:
    """``optimize()``'s settings objects from a study file's sections (the file keeps its own layout)."""
    study, objective, cluster = spec.study, spec.objective, spec.cluster
    return {
        "timeout": None if study.timeout is None else Timeout(study.timeout, hard=study.hard_timeout),
        "failures": Failures(
            max_retries=study.max_retries,
            fail_fast=study.fail_fast or None,
            trial_timeout=objective.trial_timeout,
            scheduler_grace_s=cluster.scheduler_grace,
        ),
        "resources": Resources(
            gpus_per_trial=cluster.gpus_per_trial if cluster.uses_gpu and spec.elastic is None else None,
            gpu_memory_fraction=cluster.gpu_memory_fraction,
        ),
        "tracking": Tracking(
            wandb=spec_wandb_option(spec.wandb, objective.metric), output_dir=out, checkpoint_dir=out / "checkpoints"
        ),
        "trials": TrialOptions(report_last_n=study.report_last_n, repeats=study.repeats, seed_base=study.seed_base),
        "scheduler": make_scheduler(spec.scheduler, spec.pruner),
        "elastic": None if spec.elastic is None else Elastic(**spec.elastic.model_dump()),
    }


def run_failed(report: RunReport) -> str | None:
    """Why the run counts as failed (every outcome it produced is FAIL, or it had nothing left to run in a
    study where nothing ever completed), or ``None``."""
    everything = report.study.get_trials(deepcopy=False)
    trials = everything[report.first_number :]
    finished = [t for t in trials if t.state in FINISHED and not t.user_attrs.get(NOT_STARTED)]
    if not finished and report.ran == 0 and not any(t.state == TrialState.COMPLETE for t in everything):
        held = outcomes(report.study)
        return (
            f"nothing to run: the study already holds {held} outcome(s) and none completed; raise n_trials "
            "(--n-trials) to try again, or use a new study name"
        )
    if not finished or any(t.state != TrialState.FAIL for t in finished):
        return None
    reason = finished[0].user_attrs.get(FAIL_REASON, "no reason recorded")
    return f"all {len(finished)} trial(s) of this run failed; the first (trial {finished[0].number}): {reason}"
