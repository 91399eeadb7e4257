"""Studies built in-process with plain Optuna (no Dask): the components only read a study."""

from __future__ import annotations

import math

import optuna
import pytest
from bokeh.document import Document

from daskopt.dashboard.base import Component
from daskopt.dashboard.snapshot import SnapshotBuilder


def objective(trial: optuna.Trial, prune: bool = True) -> float:
    x = trial.suggest_float("x", -5, 5)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    if trial.number % 13 == 12:
        return math.nan  # recorded as FAIL
    value = x * x + (1.0 if kind == "b" else 0.0) + math.log10(lr) ** 2 / 10
    for step in range(5):
        trial.report(value + (5 - step), step)
        if prune and trial.should_prune():
            raise optuna.TrialPruned()
    return value


def unpruned(trial: optuna.Trial) -> float:
    """Trials that complete (or FAIL on every 13th number), for tests that need new completed rows."""
    return objective(trial, prune=False)


def make_study(n_trials: int = 40) -> optuna.Study:
    study = optuna.create_study(
        study_name="dash",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.fixture
def study() -> optuna.Study:
    return make_study()


def by_state(study: optuna.Study, state: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.name == state]


def fed(component: Component, builder: SnapshotBuilder) -> Component:
    """The component, updated once, with its roots in a document (so stream/patch events are recorded)."""
    Document().add_root(component.root)
    component.update(builder.update())
    return component
