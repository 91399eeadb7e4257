"""Promotion-type ASHA and Hyperband: a trial pauses at a rung and is resumed when it is promoted.

Stopping-type ASHA (Optuna's ``SuccessiveHalvingPruner``) decides at each rung, with the results known
then, whether a trial goes on; one judged too early is lost for good. Promotion-type ASHA (Li et al.,
"A System for Massively Parallel Hyperparameter Tuning", and Syne Tune's ``type="promotion"``) pauses
every trial at every rung, and a free slot resumes the best paused trial of the highest rung that is in
the top ``1/reduction_factor`` of all results recorded there, else starts a new trial. Late results can
still promote a trial paused long ago, and a trial resumes from its checkpoint instead of starting over.

Rungs are at steps ``min_resource * reduction_factor ** (k + min_early_stopping_rate)`` below
``max_resource``; at ``max_resource`` a trial runs to its end. A trial is recorded at a rung at its first
report at or past the rung's step. One that is promotable at once goes on without pausing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from daskopt import attributes
from daskopt.arguments import check_int
from daskopt.schedulers.base import CONTINUE, PRUNE, SUSPEND, Decision, Exploit, Report, Scheduler

logger = logging.getLogger("daskopt")


class _Rungs:
    """One bracket's rungs: each rung's recorded values and who was promoted out of it."""

    def __init__(self, steps: list[int], eta: int) -> None:
        self.steps = steps
        self.eta = eta
        self.maximize = False
        self.values: list[dict[int, float]] = [{} for _ in steps]
        self.promoted: list[set[int]] = [set() for _ in steps]

    def highest(self, step: int) -> int | None:
        """The highest rung at or below ``step``."""
        reached = [k for k, rung_step in enumerate(self.steps) if rung_step <= step]
        return reached[-1] if reached else None

    def new_rung(self, number: int, step: int) -> int | None:
        """The rung a report at ``step`` reaches for the first time (the highest one), if any."""
        rung = self.highest(step)
        return None if rung is None or number in self.values[rung] else rung

    def record(self, rung: int, number: int, value: float) -> None:
        """A trial's value at a rung; NaN counts as the worst."""
        if math.isnan(value):
            value = -math.inf if self.maximize else math.inf
        self.values[rung][number] = value

    def top(self, rung: int) -> list[int]:
        """The rung's top ``1/eta`` (by value, ties by trial number), best first."""
        values = self.values[rung]
        ranked = sorted(values, key=lambda n: (-values[n] if self.maximize else values[n], n))
        return ranked[: len(values) // self.eta]


class PromotionASHA(Scheduler):
    """Asynchronous successive halving that pauses and promotes (see the module docstring).

    Args:
        max_resource: the step at which a trial has had its full budget (it then runs to its end).
        min_resource: the first rung's step.
        reduction_factor: ``eta``; a rung promotes its top ``1/eta``.
        min_early_stopping_rate: skips the first ``s`` rungs (Hyperband's brackets).
    """

    name = "asha-promotion"

    def __init__(
        self, max_resource: int, min_resource: int = 1, reduction_factor: int = 3, min_early_stopping_rate: int = 0
    ) -> None:
        _check("PromotionASHA", max_resource, min_resource, reduction_factor)
        check_int("min_early_stopping_rate", min_early_stopping_rate, 0, where="daskopt.schedulers.PromotionASHA")
        self.max_resource = max_resource
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.min_early_stopping_rate = min_early_stopping_rate
        steps = []
        k = min_early_stopping_rate
        while (step := min_resource * reduction_factor**k) < max_resource:
            steps.append(step)
            k += 1
        self.rungs = _Rungs(steps, reduction_factor)
        self.paused: dict[int, int] = {}  # number -> the rung it is paused at
        self._warned = False

    def start(
        self, study: optuna.Study, trials: Sequence[FrozenTrial], n_concurrent: int, n_trials: int | None = None
    ) -> None:
        super().start(study, trials, n_concurrent, n_trials)
        self.rungs.maximize = self.maximize
        replaced = attributes.replaced_numbers(trials)
        for trial in trials:  # a rerun: the rungs of the trials that finished or still go on
            if trial.number not in replaced and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
                self._record_all(trial.number, trial.intermediate_values)

    def _record_all(self, number: int, values: Mapping[int, float]) -> int | None:
        """Record every rung ``values`` reach; the highest one recorded."""
        last = None
        for rung, rung_step in enumerate(self.rungs.steps):
            reached = sorted(step for step in values if step >= rung_step)
            if reached and number not in self.rungs.values[rung]:
                self.rungs.record(rung, number, values[reached[0]])
                last = rung
                if rung > 0:
                    self.rungs.promoted[rung - 1].add(number)
        return last

    def decide(self, report: Report) -> Decision:
        rung = self.rungs.new_rung(report.number, report.step)
        if rung is None:
            return CONTINUE
        self.rungs.record(rung, report.number, report.value)
        if report.number in self.rungs.top(rung):
            self.rungs.promoted[rung].add(report.number)
            return CONTINUE
        if not report.checkpointed:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "daskopt: %s: trial %d reached rung step %d without a checkpoint at that step, so it is "
                    "stopped instead of paused; save one before each report (trial.save_checkpoint(state, step))",
                    self.name,
                    report.number,
                    report.step,
                )
            return PRUNE
        return SUSPEND

    def suspended(self, number: int, step: int) -> None:
        rung = self.rungs.highest(step)
        if rung is not None:
            self.paused[number] = rung

    def adopted(
        self, number: int, values: Mapping[int, float], paused_at: int | None, origin: int | None = None
    ) -> None:
        self._record_all(number, values)
        if paused_at is not None:
            self.suspended(number, paused_at)

    def resume_next(self) -> int | Exploit | None:
        for rung in reversed(range(len(self.rungs.steps))):
            for number in self.rungs.top(rung):
                if number in self.paused and self.paused[number] == rung and number not in self.rungs.promoted[rung]:
                    self.rungs.promoted[rung].add(number)
                    del self.paused[number]
                    return number
        return None

    def finished(self, trial: FrozenTrial) -> None:
        self.paused.pop(trial.number, None)

    def describe(self) -> str:
        return (
            f"{self.name} (rungs at steps {', '.join(map(str, self.rungs.steps)) or 'none'}, "
            f"full budget at {self.max_resource}, eta {self.reduction_factor})"
        )


class PromotionHyperband(Scheduler):
    """Hyperband whose brackets are promotion-type ASHA: each new trial joins one bracket (bracket ``s``
    skips the first ``s`` rungs), in proportion to the trials Hyperband's budget gives each (as Optuna's
    ``HyperbandPruner`` does), and a free slot resumes the first promotable trial of any bracket."""

    name = "hyperband-promotion"

    def __init__(self, max_resource: int, min_resource: int = 1, reduction_factor: int = 3) -> None:
        _check("PromotionHyperband", max_resource, min_resource, reduction_factor)
        first = PromotionASHA(max_resource, min_resource, reduction_factor)
        n_brackets = max(len(first.rungs.steps), 1)
        self.brackets = [first] + [
            PromotionASHA(max_resource, min_resource, reduction_factor, s) for s in range(1, n_brackets)
        ]
        # Hyperband's trials per bracket: ceil(n_brackets / (s + 1) * eta ** s), most in the most aggressive
        weights = [
            math.ceil(n_brackets / (s + 1) * reduction_factor ** (n_brackets - 1 - s)) for s in range(n_brackets)
        ]
        self._cumulative = [sum(weights[: i + 1]) for i in range(n_brackets)]
        self._of: dict[int, PromotionASHA] = {}
        self._origin: dict[int, int] = {}  # a retry's or a recovered trial's number -> its first attempt's

    def _bracket(self, number: int) -> PromotionASHA:
        """A trial's bracket, chosen by its first attempt's number: a retry stays in its bracket."""
        bracket = self._of.get(number)
        if bracket is None:
            slot = self._origin.get(number, number) % self._cumulative[-1]
            bracket = self.brackets[next(i for i, edge in enumerate(self._cumulative) if slot < edge)]
            self._of[number] = bracket
        return bracket

    def start(
        self, study: optuna.Study, trials: Sequence[FrozenTrial], n_concurrent: int, n_trials: int | None = None
    ) -> None:
        super().start(study, trials, n_concurrent, n_trials)
        for trial in trials:
            self._origin[trial.number] = attributes.checkpoint_key(trial.number, trial.user_attrs)
        for bracket in self.brackets:
            bracket.start(study, [t for t in trials if self._bracket(t.number) is bracket], n_concurrent, n_trials)

    def decide(self, report: Report) -> Decision:
        self._origin.setdefault(report.number, report.member)
        return self._bracket(report.number).decide(report)

    def suspended(self, number: int, step: int) -> None:
        self._bracket(number).suspended(number, step)

    def adopted(
        self, number: int, values: Mapping[int, float], paused_at: int | None, origin: int | None = None
    ) -> None:
        if origin is not None:
            self._origin.setdefault(number, origin)
        self._bracket(number).adopted(number, values, paused_at, origin)

    def resume_next(self) -> int | Exploit | None:
        for bracket in self.brackets:
            number = bracket.resume_next()
            if number is not None:
                return number
        return None

    def finished(self, trial: FrozenTrial) -> None:
        self._bracket(trial.number).finished(trial)


def _check(name: str, max_resource: int, min_resource: int, reduction_factor: int) -> None:
    where = f"daskopt.schedulers.{name}"
    check_int("max_resource", max_resource, 1, where=where)
    check_int("min_resource", min_resource, 1, where=where)
    check_int("reduction_factor", reduction_factor, 2, where=where)
    if min_resource > max_resource:
        raise ValueError(f"{where}: min_resource ({min_resource}) must be at most max_resource ({max_resource})")
