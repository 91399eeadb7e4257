"""What the loop sends a task for each trial: the ``ASSIGN`` message, built from the trial and the call.

Most of an assignment is the same for every trial of one ``optimize()`` call (the declared space, the
heartbeat and chaining settings, the loggers' settings, the pickled objective); it is fixed here once, and
each trial adds its number, parameters, joint sample and folders.
"""

from __future__ import annotations

import hashlib
from typing import Any

import optuna
from optuna.distributions import distribution_to_json

from daskopt.attributes import checkpoint_key
from daskopt.elastic.placement import Placement
from daskopt.engine.config import EngineConfig
from daskopt.engine.state import TrialRun
from daskopt.optuna_access import trial_id
from daskopt.protocol import events
from daskopt.shipping import dumps_objective
from daskopt.trial.study_view import study_facts


class Assignments:
    """Builds the assignment of each trial of one call."""

    def __init__(self, objective: Any, study: optuna.Study, config: EngineConfig) -> None:
        self.objective_bytes = dumps_objective(objective)
        self.digest = hashlib.sha256(self.objective_bytes).hexdigest()  # tasks' cache key for the objective
        self._space = {name: distribution_to_json(d) for name, d in (config.search_space or {}).items()}
        self._n_objectives = len(study.directions)
        self._study = study_facts(study)  # read once: trial.study answers from it
        self._config = config

    def for_run(self, run: TrialRun, has_objective: bool, placement: Placement | None = None) -> events.Assignment:
        """``run``'s assignment; the objective travels only to a process that does not have it yet. An elastic
        trial's task holds its replicas' slots for one trial only: it never chains."""
        config, start = self._config, run.trial.datetime_start
        root = config.checkpoint_root
        return events.Assignment(
            number=run.number,
            params=run.params if self._space else {},
            distributions=self._space,
            user_attrs=run.user_attrs,
            n_objectives=self._n_objectives,
            datetime_start=(start.isoformat() if start else ""),
            report_last_n=config.trials.report_last_n,
            prune_enabled=run.prune_enabled,
            heartbeat_s=config.failures.heartbeat_s,
            chain_below_s=config.trials.chain_below_s if placement is None else 0.0,
            tracking=config.tracking,
            checkpoint_dir=None if root is None else f"{root}/trial-{checkpoint_key(run.number, run.user_attrs)}",
            restore=None if root is None or run.restore is None else _restore(root, run),
            keep_every=None if config.scheduler is None else config.scheduler.keep_every,
            elastic=None if placement is None else placement.to_wire(),
            joint={name: [v.distribution_json, v.value] for name, v in run.joint.items()},
            objective=None if has_objective else self.objective_bytes,
            trial_id=trial_id(run.trial),
            study=self._study,
        )


def _restore(root: str, run: TrialRun) -> list[Any]:
    """``[folder, step]``, or ``[folder, None, bound]``: the newest checkpoint there, at or below ``bound``."""
    assert run.restore is not None
    key, step = run.restore
    restore: list[Any] = [f"{root}/trial-{key}", step]
    if step is None and run.restore_below is not None:
        restore.append(run.restore_below)
    return restore
