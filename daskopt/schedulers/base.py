"""What a trial scheduler is: the loop's second kind of decider, beside Optuna's pruners.

A pruner answers one question, "stop this trial for good?". A scheduler may also answer "pause it" (its
slot is freed and it is resumed later from its checkpoint, on any worker: promotion-type ASHA) or "let
it go on as a copy of a better trial, with new hyperparameters" (PBT's exploit and explore), and it picks
which paused trial a free slot resumes. It is asked in the same places as a pruner, in the engine loop
only (``should_prune()`` on the worker is the question), so it needs no locking and sees every report in
the order the loop received it.

Trials stay ordinary Optuna trials: a paused trial is RUNNING in storage with ``paused_at`` and
``suspended`` user attributes; a PBT exploit ends the trial as PRUNED and enqueues the trial that goes on
(``continues``, ``parent`` and ``restore`` attributes; :mod:`daskopt.attributes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

CONTINUE = "continue"
PRUNE = "prune"
SUSPEND = "suspend"


@dataclass(frozen=True)
class Exploit:
    """End a trial and go on as a new trial: ``params``, started from ``donor``'s checkpoint at ``step``
    (PBT's exploit and explore). The trial ended is the one asking (a decision) or the paused trial
    ``target`` (from :meth:`Scheduler.resume_next`)."""

    donor: int
    step: int
    params: dict[str, Any]
    target: int | None = None


Decision = str | Exploit  # CONTINUE, PRUNE, SUSPEND or an Exploit


@dataclass(frozen=True)
class Report:
    """A running trial as a scheduler sees it when it asks ``should_prune()``: its latest report."""

    number: int
    step: int
    value: float
    checkpoint_step: int | None  # its newest complete checkpoint's step (``None``: none yet)
    params: Mapping[str, Any]
    distributions: Mapping[str, BaseDistribution]
    member: int = -1  # the trial its chain of attempts began with (a PBT member, a retried trial's first)

    def __post_init__(self) -> None:
        if self.member < 0:
            object.__setattr__(self, "member", self.number)

    @property
    def checkpointed(self) -> bool:
        """Whether the trial has a checkpoint at this very step (where it can be paused or copied)."""
        return self.checkpoint_step == self.step


class Scheduler:
    """Base class. The loop calls :meth:`start` once per ``optimize()`` call, then the rest as trials go.

    Subclasses say whether they need checkpoints (``needs_checkpoints``): those refuse to start without a
    checkpoint folder (``Tracking(checkpoint_dir=...)``, or an ``[output]`` folder in a study file).
    """

    name = "scheduler"
    needs_checkpoints = True
    keep_every: int | None = None  # other trials may start from checkpoints at these steps: keep them a while

    def start(
        self, study: optuna.Study, trials: Sequence[FrozenTrial], n_concurrent: int, n_trials: int | None = None
    ) -> None:
        """The call begins; ``trials`` are the study's trials so far (to rebuild state on a rerun), and
        ``n_trials`` the outcomes the call is to produce (PBT's population)."""
        self.study = study
        self.maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        self.n_concurrent = n_concurrent
        self.n_trials = n_trials

    def decide(self, report: Report) -> Decision:
        """The answer to a trial's ``should_prune()`` question."""
        return CONTINUE

    def suspended(self, number: int, step: int) -> None:
        """Trial ``number`` is paused at ``step`` (its objective stopped after a SUSPEND)."""

    def resume_next(self) -> int | Exploit | None:
        """A paused trial to resume in a free slot now, if any (asked before a new trial is started), or an
        :class:`Exploit` of a paused trial (its ``target``)."""
        return None

    def finished(self, trial: FrozenTrial) -> None:
        """A trial ended (COMPLETE, PRUNED or FAIL), its last segment included."""

    def adopted(
        self, number: int, values: Mapping[int, float], paused_at: int | None, origin: int | None = None
    ) -> None:
        """A trial that goes on from an earlier one (a retry, a clone, a paused trial of a stopped driver)
        carries its reports ``values``; ``paused_at`` is set when it is to stay paused until resumed;
        ``origin`` is the trial its chain of attempts began with."""

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    def describe(self) -> str:
        return self.name


def check_scheduler(scheduler: Any, study: optuna.Study, checkpoint_root: str | None, where: str) -> None:
    """One-line errors for a scheduler that cannot run with this study and these settings."""
    if scheduler is None:
        return
    if not isinstance(scheduler, Scheduler):
        raise TypeError(
            f"{where}: scheduler must be a daskopt.schedulers.Scheduler (PromotionASHA, PromotionHyperband, PBT, "
            f"PB2), got {type(scheduler).__name__}"
        )
    if len(study.directions) != 1:
        raise ValueError(f"{where}: scheduler {scheduler.name} needs a single-objective study")
    pruner = study.pruner
    default = type(pruner) is optuna.pruners.MedianPruner and vars(pruner) == vars(optuna.pruners.MedianPruner())
    if not isinstance(pruner, optuna.pruners.NopPruner) and not default:
        raise ValueError(
            f"{where}: scheduler {scheduler.name} and the study's pruner {type(pruner).__name__} would both decide "
            "when trials stop; a scheduler decides alone (it also pauses, resumes and clones trials), so create "
            "the study with pruner=optuna.pruners.NopPruner()"
        )
    if scheduler.needs_checkpoints and checkpoint_root is None:
        raise ValueError(
            f"{where}: scheduler {scheduler.name} pauses trials and resumes them from their checkpoints, and there "
            "is no checkpoint folder: pass tracking=daskopt.Tracking(checkpoint_dir=...) (a folder all workers "
            "reach), or give the study file an [output] dir"
        )
