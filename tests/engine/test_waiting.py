"""Enqueued trials are popped as Optuna pops them, without a scan of the study per ask."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from daskopt.engine import waiting


def storages(tmp_path):
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.journal"))
    return {"memory": None, "journal": optuna.storages.JournalStorage(journal), "sqlite": f"sqlite:///{tmp_path}/s.db"}


@pytest.mark.parametrize("kind", ["memory", "journal", "sqlite"])
def test_asks_pop_the_same_enqueued_trials_in_the_same_order_as_optuna(tmp_path, kind):
    """Enqueued before and between asks, some taken by another handle on the same storage: the same
    trials run with the same parameters as with Optuna's own pop."""
    storage = storages(tmp_path)[kind]
    ours = optuna.create_study(storage=storage, study_name="ours", sampler=optuna.samplers.RandomSampler(seed=0))
    theirs = optuna.create_study(storage=storage, study_name="theirs", sampler=optuna.samplers.RandomSampler(seed=0))
    for study in (ours, theirs):
        study.enqueue_trial({"x": 0.1})
        study.enqueue_trial({"x": 0.2})
    waiting.install(ours)
    try:
        for study in (ours, theirs):
            for step in range(6):
                if step == 2:
                    study.enqueue_trial({"x": 0.3})
                if step == 3:  # another process on the same storage takes the next enqueued trial
                    other = optuna.load_study(study_name=study.study_name, storage=study._storage)
                    other.enqueue_trial({"x": 0.4})
                    taken = other.ask()
                    other.tell(taken, taken.suggest_float("x", 0, 1))
                trial = study.ask()
                study.tell(trial, trial.suggest_float("x", 0, 1))
    finally:
        waiting.uninstall(ours)
    assert [(t.number, t.state, t.params) for t in ours.trials] == [
        (t.number, t.state, t.params) for t in theirs.trials
    ]
    assert [t.params["x"] for t in ours.trials[:4]] == [0.1, 0.2, 0.3, 0.4]
    assert "_pop_waiting_trial_id" not in vars(ours)


def test_asks_never_scan_the_study_for_waiting_trials():
    study = optuna.create_study()
    assert waiting.install(study) is not None
    scans = []
    real = study._storage.get_all_trials

    def get_all_trials(study_id, deepcopy=True, states=None):
        scans.append(states)
        return real(study_id, deepcopy=deepcopy, states=states)

    study._storage.get_all_trials = get_all_trials  # type: ignore[method-assign]
    try:
        for _ in range(50):
            study.tell(study.ask(), 1.0)
    finally:
        waiting.uninstall(study)
    assert not [states for states in scans if states is not None and TrialState.WAITING in states]
    assert len(study.trials) == 50 and all(t.state == TrialState.COMPLETE for t in study.trials)
