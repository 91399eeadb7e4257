"""Population Based Training (Jaderberg et al., 2017): the population trains once, and its weaker members
go on from the checkpoints of stronger ones with perturbed hyperparameters.

Every ``perturbation_interval`` steps a member is ranked by its latest report against the population's
latest reports. One in the bottom ``quantile_fraction`` *exploits*: it ends, and goes on as a new trial
that starts from the checkpoint of a member of the top quantile, with that member's hyperparameters
*explored* (each resampled with ``resample_probability``, else multiplied by one of
``perturbation_factors``, or moved to a neighbouring choice; kept inside its distribution), or changed by
your ``explore`` function. Only members with a checkpoint at their last report can be copied.

In storage a member is a chain of Optuna trials, one per stretch with one set of hyperparameters: a
trial that exploited is PRUNED (no outcome) and the next one carries ``member``, ``continues`` (the
trial it replaces), ``parent`` (the trial whose checkpoint it started from) and the parent's reports up
to that checkpoint, so its learning curve is whole. A member that runs to its end is COMPLETE: the
study's best trial is the winning member's last stretch, and :func:`schedule` reads its hyperparameter
schedule back through its parents (what Ray Tune calls a replay).

``synchronous=False`` (the default) decides for each member as it reaches its interval. With
``synchronous=True`` every member pauses at each interval until the whole population (``n_trials``) has
reached it or finished; then the bottom quantile exploits and everyone resumes.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial

from daskopt import attributes
from daskopt.arguments import check_int
from daskopt.schedulers.base import CONTINUE, SUSPEND, Decision, Exploit, Report, Scheduler

logger = logging.getLogger("daskopt")

Explore = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class _Member:
    """What PBT knows of one member: its latest ranked report and its newest checkpoint."""

    number: int  # the trial it runs as now
    progress: int = 0  # steps done at its last decision (step + 1)
    score: float = math.nan
    checkpoint: tuple[int, int] | None = None  # (trial number, step) of its newest checkpoint at a decision
    params: Mapping[str, Any] | None = None
    distributions: Mapping[str, BaseDistribution] | None = None
    finished: bool = False
    paused: bool = False


class PBT(Scheduler):
    """Population Based Training (see the module docstring).

    Args:
        perturbation_interval: steps between two decisions of a member.
        quantile_fraction: the bottom fraction exploits the top fraction (at most half the population).
        resample_probability: the chance that an explored hyperparameter is drawn anew from its distribution.
        perturbation_factors: what a numeric hyperparameter is multiplied by, one picked at random.
        hyperparameters: the names explored (default: every parameter of the trial).
        explore: your own explore step: called with the donor's (already explored) parameters, returns the
            parameters to go on with; values are kept inside their distributions.
        synchronous: every member waits for the whole population at each interval.
        last_step: the last step a member reports (the end of its training); no decision is made there, so
            a member that has finished training is not replaced by a copy that has nothing left to run.
        seed: for the random choices (donor, perturbation, resampling).
    """

    name = "pbt"

    def __init__(
        self,
        perturbation_interval: int,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Sequence[float] = (1.2, 0.8),
        hyperparameters: Sequence[str] | None = None,
        explore: Explore | None = None,
        synchronous: bool = False,
        last_step: int | None = None,
        seed: int | None = None,
    ) -> None:
        where = f"daskopt.schedulers.{type(self).__name__}"
        check_int("perturbation_interval", perturbation_interval, 1, where=where)
        check_int("last_step", last_step, 0, optional=True, where=where)
        if not (isinstance(quantile_fraction, (int, float)) and 0 < quantile_fraction <= 0.5):
            raise ValueError(f"{where}: quantile_fraction must be in (0, 0.5], got {quantile_fraction!r}")
        if not (isinstance(resample_probability, (int, float)) and 0 <= resample_probability <= 1):
            raise ValueError(f"{where}: resample_probability must be in [0, 1], got {resample_probability!r}")
        factors = tuple(perturbation_factors)
        if not factors or not all(isinstance(f, (int, float)) and f > 0 for f in factors):
            raise ValueError(f"{where}: perturbation_factors must be positive numbers, got {perturbation_factors!r}")
        if explore is not None and not callable(explore):
            raise TypeError(f"{where}: explore must be a function of the parameters dict, got {explore!r}")
        self.perturbation_interval = perturbation_interval
        self.keep_every = perturbation_interval  # a donor's checkpoint at its decision step outlives a few more
        self.quantile_fraction = float(quantile_fraction)
        self.resample_probability = float(resample_probability)
        self.perturbation_factors = factors
        self.hyperparameters = None if hyperparameters is None else tuple(hyperparameters)
        self.custom_explore = explore
        self.synchronous = bool(synchronous)
        self.last_step = last_step
        self.rng = random.Random(seed)
        self.members: dict[int, _Member] = {}
        self._exploited: set[int] = set()  # trials that ended by exploiting: their member goes on
        self._queue: deque[int | Exploit] = deque()  # synchronous: what the barrier decided, for free slots
        self._generation = 1  # synchronous: the interval everyone is waiting at

    def start(
        self, study: optuna.Study, trials: Sequence[FrozenTrial], n_concurrent: int, n_trials: int | None = None
    ) -> None:
        super().start(study, trials, n_concurrent, n_trials)
        if self.synchronous and n_trials is None:
            raise ValueError(f"{self.name}: synchronous PBT needs n_trials (the population that waits for itself)")

    # ------------------------------------------------------------------------------ deciding
    def decide(self, report: Report) -> Decision:
        member = self.members.setdefault(report.member, _Member(report.number))
        member.number = report.number
        progress = report.step + 1
        if progress - member.progress < self.perturbation_interval:
            return CONTINUE
        if self.last_step is not None and report.step >= self.last_step:
            return CONTINUE
        member.progress = progress
        member.score = report.value
        member.params, member.distributions = dict(report.params), dict(report.distributions)
        member.checkpoint = (report.number, report.step) if report.checkpointed else None
        if self.synchronous:
            if member.checkpoint is None:
                self._no_checkpoint(report)
                return CONTINUE
            return SUSPEND
        return self._exploit_or_continue(report.member)

    def _exploit_or_continue(self, key: int) -> Decision:
        """Async: a bottom-quantile member goes on from a top-quantile member's checkpoint."""
        bottom, top = self._quantiles(self.members)
        if key not in bottom:
            return CONTINUE
        return self._exploit(key, top) or CONTINUE

    def _quantiles(self, members: Mapping[int, _Member]) -> tuple[list[int], list[int]]:
        ranked = sorted(
            (k for k, m in members.items() if not math.isnan(m.score)),
            key=lambda k: -members[k].score if self.maximize else members[k].score,
        )
        if len(ranked) < 2:
            return [], []
        n = min(math.ceil(len(ranked) * self.quantile_fraction), len(ranked) // 2)
        return ranked[len(ranked) - n :], ranked[:n]

    def _exploit(self, key: int, top: list[int], target: int | None = None) -> Exploit | None:
        donors = [k for k in top if k != key and self.members[k].checkpoint is not None]
        if not donors:
            return None
        donor = self.members[self.rng.choice(donors)]
        assert donor.checkpoint is not None and donor.params is not None and donor.distributions is not None
        member = self.members[key]
        self._exploited.add(member.number)
        params = self.explore(dict(donor.params), donor.distributions)
        member.progress, member.score = donor.progress, donor.score
        member.params, member.distributions = params, donor.distributions
        member.checkpoint = None  # no donor until its clone checkpoints at a decision of its own
        number, step = donor.checkpoint
        return Exploit(donor=number, step=step, params=params, target=target)

    def _no_checkpoint(self, report: Report) -> None:
        if "checkpoint" not in getattr(self, "_warned", set()):
            self._warned = {"checkpoint"}
            logger.warning(
                "daskopt: %s: trial %d reported step %d without a checkpoint at that step, so it can neither be "
                "copied nor paused there; save one before each report (trial.save_checkpoint(state, step))",
                self.name,
                report.number,
                report.step,
            )

    # ----------------------------------------------------------------------- synchronous
    def suspended(self, number: int, step: int) -> None:
        for member in self.members.values():
            if member.number == number:
                member.paused = True
        self._barrier()

    def finished(self, trial: FrozenTrial) -> None:
        if trial.number in self._exploited:  # its member goes on as the clone
            return
        for member in self.members.values():
            if member.number == trial.number:
                member.finished = True
        if self.synchronous:
            self._barrier()

    def _barrier(self) -> None:
        """Synchronous: once the whole population is paused at this interval (or done), decide for all."""
        if not self.synchronous or self._queue:
            return
        waiting = {k: m for k, m in self.members.items() if m.paused and not m.finished}
        done = sum(m.finished for m in self.members.values())
        if not waiting or len(waiting) + done < (self.n_trials or 0):
            return
        bottom, top = self._quantiles(waiting)
        for key in sorted(waiting, key=lambda k: waiting[k].number):
            member = waiting[key]
            member.paused = False
            exploit = self._exploit(key, top, target=member.number) if key in bottom else None
            self._queue.append(exploit or member.number)

    def resume_next(self) -> int | Exploit | None:
        return self._queue.popleft() if self._queue else None

    # ---------------------------------------------------------------------------- explore
    def explore(self, params: dict[str, Any], distributions: Mapping[str, BaseDistribution]) -> dict[str, Any]:
        """The donor's parameters, perturbed or resampled, then your ``explore``; kept inside their ranges."""
        names = self.hyperparameters if self.hyperparameters is not None else tuple(params)
        for name in names:
            distribution = distributions.get(name)
            if distribution is None or name not in params:
                continue
            if self.rng.random() < self.resample_probability:
                params[name] = self._resample(distribution)
            else:
                params[name] = self._perturb(params[name], distribution)
        if self.custom_explore is not None:
            params = dict(self.custom_explore(dict(params)))
        return {
            name: _clip(value, distributions[name]) if name in distributions else value
            for name, value in params.items()
        }

    def _resample(self, distribution: BaseDistribution) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            return self.rng.choice(distribution.choices)
        assert isinstance(distribution, (FloatDistribution, IntDistribution))
        low, high = distribution.low, distribution.high
        if distribution.log:
            value = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        else:
            value = self.rng.uniform(low, high)
        return value

    def _perturb(self, value: Any, distribution: BaseDistribution) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            index = distribution.choices.index(value) + self.rng.choice((-1, 1))
            return distribution.choices[min(max(index, 0), len(distribution.choices) - 1)]
        factor = self.rng.choice(self.perturbation_factors)
        if isinstance(distribution, IntDistribution):
            moved = int(round(value * factor))
            if moved == value and factor != 1:  # a small int would never move
                moved = value + (distribution.step if factor > 1 else -distribution.step)
            return moved
        return value * factor


def _clip(value: Any, distribution: BaseDistribution) -> Any:
    """``value`` inside ``distribution``: clipped to its range and on its step grid."""
    if isinstance(distribution, CategoricalDistribution):
        return value
    assert isinstance(distribution, (FloatDistribution, IntDistribution))
    low, high = distribution.low, distribution.high
    value = min(max(value, low), high)
    step = distribution.step
    if step is not None:
        value = low + round((value - low) / step) * step
        value = min(value, high - ((high - low) % step))
    return int(value) if isinstance(distribution, IntDistribution) else float(value)


def schedule(study: optuna.Study, number: int) -> list[dict[str, Any]]:
    """The hyperparameter schedule that led to trial ``number``: one row per stretch, oldest first, each
    ``{"trial": n, "from_step": s, "params": {...}}`` (``from_step``: the first step it ran). Follows
    ``parent`` (whose checkpoint each stretch started from) back to a trial that started from scratch."""
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: int | None = number
    while current is not None and current not in seen:
        seen.add(current)
        trial = study.trials[current]
        restore = trial.user_attrs.get(attributes.RESTORE)
        start = 0 if not restore or restore[2] is None else int(restore[2]) + 1
        rows.append({"trial": current, "from_step": start, "params": dict(trial.params)})
        parent = trial.user_attrs.get(attributes.PARENT)
        current = None if parent is None else int(parent)
    return rows[::-1]


class Replay(Scheduler):
    """Runs one PBT member again along its recorded schedule (:func:`schedule`, or ``daskopt best``'s
    ``schedule``), as Ray Tune's PBT replay does: the trial starts with the first row's parameters and, at
    each later row's ``from_step``, goes on from its own checkpoint with that row's parameters. Run it with
    ``n_trials=1`` on a fresh study; a deterministic objective ends with the member's value."""

    name = "pbt-replay"

    def __init__(self, schedule: Sequence[Mapping[str, Any]]) -> None:
        rows = [dict(row) for row in schedule]
        starts = [row.get("from_step") for row in rows]
        steps = [s for s in starts if isinstance(s, int)]
        if not rows or steps != starts or steps[0] != 0 or steps != sorted(set(steps)):
            raise ValueError(
                "daskopt.schedulers.Replay: schedule must be rows {'from_step': int, 'params': {...}} with "
                f"from_step 0 first and increasing, got from_step {starts}"
            )
        self.rows = rows
        self._next = 1

    def start(
        self, study: optuna.Study, trials: Sequence[FrozenTrial], n_concurrent: int, n_trials: int | None = None
    ) -> None:
        super().start(study, trials, n_concurrent, n_trials)
        if n_trials != 1:
            raise ValueError(f"{self.name}: a replay runs one trial: pass n_trials=1, got {n_trials}")
        study.enqueue_trial(dict(self.rows[0]["params"]))

    def decide(self, report: Report) -> Decision:
        if self._next >= len(self.rows) or report.step + 1 != self.rows[self._next]["from_step"]:
            return CONTINUE
        if not report.checkpointed:
            raise ValueError(f"{self.name}: no checkpoint at step {report.step}, where the schedule changes parameters")
        row = self.rows[self._next]
        self._next += 1
        return Exploit(donor=report.number, step=report.step, params=dict(row["params"]))
