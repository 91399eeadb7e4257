"""Trials that pause, resume and go on from a checkpoint: the loop's side of :mod:`daskopt.schedulers`.

The engine loop (:mod:`daskopt.engine.loop`) calls this module at the few points where a trial can move:

- when it is asked (on the sampler thread): a trial that goes on from another (a retry of a lost trial, a
  PBT clone, a paused trial of a driver that stopped) carries that trial's reports up to the checkpoint
  it starts from, and learns the checkpoint (``restore``);
- at a ``should_prune()`` question, the scheduler (if any) decides instead of the pruner;
- when a paused trial's objective has stopped, it leaves the running trials (its slot is free) but stays
  RUNNING in storage, ``suspended``; a free slot may resume it, the same Optuna trial, from its checkpoint;
- when the call ends, a trial still paused is recorded PRUNED (its last report is its value, as for a
  trial a pruner stopped), or, when the call is interrupted, enqueued again to stay paused in the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import optuna

from daskopt import attributes, optuna_access
from daskopt.engine.state import TrialRun
from daskopt.protocol import events
from daskopt.schedulers.base import CONTINUE, PRUNE, SUSPEND, Exploit, Report, Scheduler

logger = logging.getLogger("daskopt")


class Movable:
    """The paused trials of one call and its scheduler (``None``: the study's pruner decides, as before)."""

    def __init__(self, study: optuna.Study, scheduler: Scheduler | None) -> None:
        self.study = study
        self.scheduler = scheduler
        self.suspended: dict[int, TrialRun] = {}
        self._keys: dict[int, int] = {}  # trial number -> its checkpoint folder's key, for PBT donors

    def start(self, n_concurrent: int, n_trials: int | None) -> None:
        if self.scheduler is not None:
            trials = self.study.get_trials(deepcopy=False)
            self.scheduler.start(self.study, trials, n_concurrent, n_trials)
            for trial in trials:
                self._keys[trial.number] = attributes.checkpoint_key(trial.number, trial.user_attrs)

    # ------------------------------------------------------------------ asked (sampler thread)
    def prepare(self, run: TrialRun) -> None:
        """A trial that goes on from another: where it starts, and the reports it carries up to there."""
        restore = run.user_attrs.get(attributes.RESTORE)
        if not restore:
            return
        source, key, step = restore
        run.restore = (int(key), None if step is None else int(step))
        if step is None:  # the newest checkpoint there: the task says which (RESTORED), then they are carried
            run.restore_below = self._last_report(int(source))
            return
        if run.user_attrs.get(attributes.SUSPENDED):
            run.paused_at = int(step)
        self._carry(run, int(step))

    def _last_report(self, number: int) -> int | None:
        """The last step trial ``number`` reported: a checkpoint written after it (the trial was stopped
        between its checkpoint and its report) has no report to carry, so an attempt starts at or below it."""
        try:
            steps = optuna_access.trial_by_number(self.study, number).intermediate_values
        except Exception:  # unknown: the newest checkpoint, as before
            return None
        return max(steps) if steps else None

    def _carry(self, run: TrialRun, step: int) -> None:
        """Report into ``run`` the reports of the trial it goes on from, up to ``step``."""
        source = run.user_attrs[attributes.RESTORE][0]
        try:
            values = optuna_access.trial_by_number(self.study, int(source)).intermediate_values
        except Exception as exc:  # the reports are a convenience; the trial still starts from its checkpoint
            logger.warning("daskopt: trial %d: could not read the reports of trial %s: %s", run.number, source, exc)
            return
        for at in sorted(s for s in values if s <= step):
            run.trial.report(values[at], at)
            run.carried[at] = values[at]
        run.checkpoint_step = step

    # ---------------------------------------------------------------------- loop thread
    def adopt(self, run: TrialRun) -> bool:
        """An asked trial: tell the scheduler what it carries; True when it is to stay paused."""
        self._keys[run.number] = attributes.checkpoint_key(run.number, run.user_attrs)
        if self.scheduler is not None and run.carried:
            self.scheduler.adopted(run.number, run.carried, run.paused_at, _origin(run))
        if run.paused_at is not None and self.scheduler is not None:
            self.suspended[run.number] = run
            return True
        return False

    def restored(self, run: TrialRun, step: int) -> None:
        """A trial that went on from the newest checkpoint of the one it replaces (its step unknown until the
        task looked): it carries that trial's reports up to there, as if the step had been named."""
        if run.carried or attributes.RESTORE not in run.user_attrs:
            return
        self._carry(run, step)
        if self.scheduler is not None and run.carried:
            self.scheduler.adopted(run.number, run.carried, None, _origin(run))

    def decide(self, run: TrialRun) -> tuple[bool, str | None]:
        """The scheduler's answer to a ``should_prune()`` question: prune, and the action (SUSPEND, EXPLOIT)."""
        assert self.scheduler is not None
        if run.last_step is None:
            return False, None
        report = Report(
            run.number,
            run.last_step,
            run.last_value,
            run.checkpoint_step,
            run.params or run.trial.params,
            run.trial.distributions,
            _origin(run),
        )
        decision = self.scheduler.decide(report)
        run.action = decision
        if decision == CONTINUE:
            return False, None
        if decision == PRUNE:
            return True, None
        if decision == SUSPEND:
            return True, events.SUSPEND
        assert isinstance(decision, Exploit)
        return True, events.EXPLOIT

    def suspend(self, run: TrialRun) -> None:
        """The trial's objective stopped after a SUSPEND: it is paused at its checkpoint."""
        step = run.checkpoint_step
        assert step is not None
        run.paused_at = step
        run.conn = None
        run.action = None
        self.suspended[run.number] = run
        paused = list(run.user_attrs.get(attributes.PAUSED_AT, [])) + [step]
        self._set(run, attributes.PAUSED_AT, paused)
        self._set(run, attributes.SUSPENDED, True)  # a rerun after a dead driver keeps it paused
        if self.scheduler is not None:
            self.scheduler.suspended(run.number, step)

    def resume_next(self) -> TrialRun | None:
        """A paused trial the scheduler resumes in a free slot, ready to assign, or one it ends to go on as a
        clone (its ``action`` is the :class:`Exploit`), or ``None``."""
        if self.scheduler is None or not self.suspended:
            return None
        decision = self.scheduler.resume_next()
        number = decision.target if isinstance(decision, Exploit) else decision
        run = self.suspended.pop(number, None) if number is not None else None
        if run is None:
            return None
        if isinstance(decision, Exploit):
            run.action = decision
            return run
        assert run.paused_at is not None
        run.restore = (self._keys.get(run.number, run.number), run.paused_at)
        run.paused_at = None
        run.prune_request = 0
        self._set(run, attributes.SUSPENDED, False)
        return run

    @staticmethod
    def _set(run: TrialRun, key: str, value: Any) -> None:
        """In storage and in the attributes a retry or a re-enqueue of the trial copies."""
        run.trial.set_user_attr(key, value)
        run.user_attrs[key] = value

    def clone(self, run: TrialRun) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The trial a PBT exploit of ``run`` goes on as: its parameters and user attributes."""
        exploit = run.action
        if not isinstance(exploit, Exploit):
            return None
        member = run.user_attrs.get(attributes.MEMBER, run.number)
        key = self._keys.get(exploit.donor, exploit.donor)
        attrs = {
            attributes.MEMBER: member,
            attributes.CONTINUES: run.number,
            attributes.PARENT: exploit.donor,
            attributes.RESTORE: [exploit.donor, key, exploit.step],
        }
        return dict(exploit.params), attrs

    def finished(self, trial: optuna.trial.FrozenTrial, replaced: bool) -> None:
        """A trial was told; ``replaced``: another goes on in its place (a retry, a PBT clone)."""
        if self.scheduler is not None and not replaced:
            self.scheduler.finished(trial)

    def end(self, requeue: bool, tell: Callable[[TrialRun], None], enqueue: Callable[[TrialRun], None]) -> None:
        """The call ends: each paused trial is recorded (``tell``) or, when interrupted, enqueued again."""
        for run in list(self.suspended.values()):
            del self.suspended[run.number]
            (enqueue if requeue else tell)(run)


def _origin(run: TrialRun) -> int:
    """The trial a chain of attempts began with: a PBT member, or the first attempt of a retried trial."""
    member = run.user_attrs.get(attributes.MEMBER)
    return int(member) if member is not None else attributes.checkpoint_key(run.number, run.user_attrs)
