"""Enqueued (WAITING) trials found without scanning the whole study on every ask.

``study.ask`` first looks for an enqueued trial to run: Optuna asks the storage for every trial in state
WAITING, and storages without an index by state (journal, in-memory) answer by going over all of them. At
30,000 trials in a journal that was 5 ms of every ask, growing with the study.

A trial is WAITING only from its creation until something runs it; it never becomes WAITING again. So this
index looks at each trial number once, as new ones appear (enqueued here or by another process on the same
storage), keeps the WAITING ones, and pops them in number order as Optuna does, with the same
compare-and-set on the storage, so several processes still never run one trial twice.
"""

from __future__ import annotations

import threading

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState


class WaitingTrials:
    """Stands in for ``Study._pop_waiting_trial_id`` while the engine runs (see :func:`installed`)."""

    def __init__(self, study: optuna.Study) -> None:
        self._storage = study._storage
        self._study_id = study._study_id
        self._lock = threading.Lock()
        self._seen = 0  # trial numbers below this were looked at
        self._waiting: list[tuple[int, int]] = []  # (number, trial id), ascending

    def pop(self) -> int | None:
        """The id of the first WAITING trial, now set RUNNING by this call; ``None`` when there is none."""
        with self._lock:
            self._look_at_new_trials()
            while self._waiting:
                _, trial_id = self._waiting.pop(0)
                try:
                    if self._storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                        return trial_id
                except UpdateFinishedTrialError:
                    continue
        return None

    def _look_at_new_trials(self) -> None:
        while True:
            try:
                trial_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, self._seen)
            except KeyError:
                return
            if self._storage.get_trial(trial_id).state == TrialState.WAITING:
                self._waiting.append((self._seen, trial_id))
            self._seen += 1


def install(study: optuna.Study) -> WaitingTrials | None:
    """From now on the study's asks pop enqueued trials from a :class:`WaitingTrials` index (until
    :func:`uninstall`); ``None`` on an Optuna without ``_pop_waiting_trial_id`` (its own path then)."""
    if not callable(getattr(study, "_pop_waiting_trial_id", None)):
        return None
    index = WaitingTrials(study)
    study._pop_waiting_trial_id = index.pop  # type: ignore[method-assign]
    return index


def uninstall(study: optuna.Study) -> None:
    if "_pop_waiting_trial_id" in vars(study):
        del study._pop_waiting_trial_id  # type: ignore[attr-defined]
