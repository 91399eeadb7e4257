"""The trial user attributes daskopt writes, and the two rules built on them: re-enqueueing and outcomes.

Trials are ordinary Optuna trials in ordinary storages, so what daskopt knows about a trial beyond
Optuna's fields travels as user attributes. Every key is named here, and so is every rule that reads
them, so that the loop (which re-enqueues lost or interrupted trials), the runner (which recovers a dead
driver's trials and counts a study's outcomes on resume), the loggers and the dashboard cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

FAIL_REASON = "fail_reason"  # one line: why the trial failed
TRACEBACK = "traceback"  # the objective's traceback, when it raised
RETRY_OF = "retry_of"  # on a re-enqueued trial: the number of the attempt it replaces
ATTEMPT = "attempt"  # 1, 2, ... on retries of a lost trial (absent: the first attempt)
CHECKPOINT_OF = "checkpoint_of"  # the trial whose checkpoint folder this one uses
NOT_STARTED = "not_started"  # written by earlier versions on trials asked but never run: no outcome
RESTORE = "restore"  # [trial whose reports it carries, checkpoint folder key, step or None]: where it starts
PAUSED_AT = "paused_at"  # the steps at which a scheduler paused the trial
SUSPENDED = "suspended"  # True while paused (a rerun after a dead driver keeps it paused)
CONTINUES = "continues"  # PBT: the trial this one goes on from (that one is no outcome)
PARENT = "parent"  # PBT: the trial whose checkpoint it started from (its weights' lineage)
MEMBER = "member"  # PBT: the population member (the first trial's number) a trial belongs to
REPEAT = "repeat"  # on repeats of an enqueued point: its index ...
SEED = "seed"  # ... and the seed it runs with (seed_base + repeat)

DIAGNOSTICS = frozenset({FAIL_REASON, TRACEBACK})  # describe one attempt: not carried over to a retry
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def attempt(user_attrs: Mapping[str, Any]) -> int:
    return int(user_attrs.get(ATTEMPT, 0))


def checkpoint_key(number: int, user_attrs: Mapping[str, Any]) -> int:
    """The trial whose checkpoint folder a trial uses: its own, or that of the attempt a retry replaces."""
    return int(user_attrs.get(CHECKPOINT_OF, number))


def requeue(
    study: optuna.Study,
    number: int,
    params: Mapping[str, Any],
    user_attrs: Mapping[str, Any],
    *,
    next_attempt: int | None = None,
    restore_step: int | None = None,
) -> None:
    """Enqueue trial ``number``'s parameters again, as the attempt that replaces it.

    The caller records trial ``number`` itself as FAIL with its reason. The new trial carries the old
    one's attributes (its seed, its repeat) except the diagnostics, plus ``retry_of`` (so the failed
    attempt is no outcome), its checkpoint folder, and ``attempt`` when given (retries of lost trials
    count attempts; a trial cut short by an interrupt keeps its count). It starts from the checkpoint of
    ``restore_step`` in that folder (``None``: the newest there), carrying the reports up to it.
    """
    attrs = {k: v for k, v in user_attrs.items() if k not in DIAGNOSTICS}
    key = checkpoint_key(number, user_attrs)
    attrs.update({RETRY_OF: number, CHECKPOINT_OF: key, RESTORE: [number, key, restore_step]})
    if next_attempt is not None:
        attrs[ATTEMPT] = next_attempt
    study.enqueue_trial(dict(params), user_attrs=attrs)


def replaced_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the trials that a re-enqueued attempt replaces."""
    return {int(t.user_attrs[key]) for t in trials for key in (RETRY_OF, CONTINUES) if key in t.user_attrs}


def is_outcome(trial: FrozenTrial, replaced: set[int]) -> bool:
    """Whether ``trial`` counts toward ``n_trials``: finished, not replaced by a retry, and run."""
    return trial.state in FINISHED and trial.number not in replaced and not trial.user_attrs.get(NOT_STARTED)


def outcomes(trials: list[FrozenTrial]) -> int:
    """How many of ``trials`` (a study's, all of them) count toward ``n_trials``."""
    replaced = replaced_numbers(trials)
    return sum(is_outcome(t, replaced) for t in trials)
