"""Objectives that the workers cannot import must still run: plain ``study.optimize`` runs any callable,
so a distributed drop-in has to ship what the workers lack.

- an objective in a module loaded with ``importlib`` from a folder that is not on the workers' path
  (a script, a notebook's helper file): cloudpickle pickles it by reference, and the worker's import fails
  unless daskopt ships the module by value;
- an objective whose module raises when imported on a worker: the study must end with an error that
  says so (or run the objective without importing it), never as "trial lost";
- helpers under ``functools.lru_cache`` in such a module (C objects that pickle names by reference);
- an objective shipped by value that references ``optuna_integration.XGBoostPruningCallback`` through
  the lazily importing ``optuna_integration`` module (an ``_IntegrationModule``, which plain pickling
  refuses).
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from pathlib import Path
from types import ModuleType

import optuna
import optuna_integration
import pytest

import daskopt
from tests.conformance.compare import assert_same_failures, assert_same_trials, counts, run_both, study_factory

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

RANDOM = lambda: optuna.samplers.RandomSampler(seed=0)  # noqa: E731

SCRIPT_OBJECTIVE = """
import math

import optuna

OFFSET = 0.25


def _shape(x, y):
    return (x - OFFSET) ** 2 + math.cos(y)


def objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    y = trial.suggest_int("y", 0, 5)
    for step in range(3):
        trial.report(_shape(x, y) + 1.0 / (step + 1), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("module", __name__)
    return _shape(x, y)
"""

XGBOOST_OBJECTIVE = """
import numpy as np
import optuna_integration
import xgboost as xgb

rng = np.random.RandomState(0)
DATA = rng.normal(size=(120, 4))
LABELS = (DATA[:, 0] + 0.5 * DATA[:, 1] > 0).astype(int)


def objective(trial):
    dtrain = xgb.DMatrix(DATA[:80], label=LABELS[:80])
    dvalid = xgb.DMatrix(DATA[80:], label=LABELS[80:])
    params = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "nthread": 1,
        "seed": 0,
        "max_depth": trial.suggest_int("max_depth", 1, 4),
        "eta": trial.suggest_float("eta", 0.05, 0.5, log=True),
    }
    pruning = optuna_integration.XGBoostPruningCallback(trial, "validation-logloss")
    booster = xgb.train(params, dtrain, num_boost_round=6, evals=[(dvalid, "validation")], callbacks=[pruning],
                        verbose_eval=False)
    return float(np.mean((booster.predict(dvalid) > 0.5) != LABELS[80:]))
"""

CACHED_HELPERS_OBJECTIVE = """
import functools


@functools.lru_cache(maxsize=4)
def dataset(n):
    return [float(i) / n for i in range(n)]


@functools.cache
def fib(k):
    return k if k < 2 else fib(k - 1) + fib(k - 2)


def objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    k = trial.suggest_int("k", 1, 12)
    trial.set_user_attr("dataset_cache", dataset.cache_parameters()["maxsize"])
    return (x - sum(dataset(8)) / 8) ** 2 + fib(k) / 144
"""

FAILS_ON_WORKERS = """
try:
    from distributed import get_worker

    get_worker()
    ON_A_WORKER = True
except (ImportError, ValueError):
    ON_A_WORKER = False
if ON_A_WORKER:
    raise RuntimeError("this module refuses to be imported on a Dask worker")


def objective(trial):
    return trial.suggest_float("x", 0.0, 1.0)
"""


def _load(folder: Path, source: str, monkeypatch: pytest.MonkeyPatch, *, register: bool = True) -> ModuleType:
    """Load ``source`` as a module from a file in ``folder`` (not on any ``sys.path``), the way
    ``importlib``'s recipe imports a source file directly; ``register`` puts it in ``sys.modules``."""
    name = f"conformance_script_{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if register:
        monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("register", [True, False], ids=["in-sys-modules", "not-in-sys-modules"])
def test_objective_from_a_module_the_workers_cannot_import(client, tmp_path, monkeypatch, register):
    module = _load(tmp_path, SCRIPT_OBJECTIVE, monkeypatch, register=register)
    make = study_factory(sampler=RANDOM, pruner=lambda: optuna.pruners.MedianPruner(n_startup_trials=2))
    runs = run_both(make, module.objective, client, n_trials=6)
    assert set(counts(runs.plain)) <= {"COMPLETE", "PRUNED"}
    assert_same_trials(runs)


def test_cached_helpers_in_a_module_the_workers_cannot_import(client, tmp_path, monkeypatch):
    """``@functools.lru_cache`` / ``@functools.cache`` helpers (a dataset loader, a memoized recursion) in
    such a module: pickle can only name their C wrappers by reference, so they are rebuilt on the worker
    around the function shipped by value, with the same cache size."""
    module = _load(tmp_path, CACHED_HELPERS_OBJECTIVE, monkeypatch)
    runs = run_both(study_factory(sampler=RANDOM), module.objective, client, n_trials=6)
    assert counts(runs.plain) == {"COMPLETE": 6}
    assert_same_trials(runs, fields=("state", "params", "values", "user_attrs"))


def test_objective_whose_module_fails_to_import_on_workers(client, tmp_path):
    """The module imports on the client but raises on a worker. Either the objective runs without the
    import (shipped by value), or the call ends with an error that quotes the import's exception."""
    folder = tmp_path / "worker_path"
    folder.mkdir()
    name = f"conformance_refuses_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(FAILS_ON_WORKERS))
    where = str(folder)

    def add_path() -> None:
        if where not in sys.path:
            sys.path.insert(0, where)

    def remove_path() -> None:
        while where in sys.path:
            sys.path.remove(where)

    add_path()
    client.run(add_path)
    try:
        module = importlib.import_module(name)
        study = study_factory(sampler=RANDOM)()
        try:
            daskopt.optimize(
                study, module.objective, n_trials=3, client=client, n_concurrent=1, show_progress_bar=False
            )
        except daskopt.DaskoptError as exc:
            assert "refuses to be imported" in str(exc), f"the error does not say why: {exc}"
            return
        reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials]
        if counts(study) != {"COMPLETE": 3}:
            assert all("refuses to be imported" in r for r in reasons), f"unclear failures: {reasons}"
    finally:
        client.run(remove_path)
        remove_path()
        sys.modules.pop(name, None)


def test_objective_shipped_by_value_referencing_optuna_integration(client, tmp_path, monkeypatch):
    """``optuna_integration.XGBoostPruningCallback`` reached through the lazy ``optuna_integration``
    module, in a module the workers cannot import."""
    module = _load(tmp_path, XGBOOST_OBJECTIVE, monkeypatch)
    make = study_factory(sampler=RANDOM, pruner=lambda: optuna.pruners.MedianPruner(n_startup_trials=2))
    runs = run_both(make, module.objective, client, n_trials=4)
    assert set(counts(runs.plain)) <= {"COMPLETE", "PRUNED"}
    assert_same_trials(runs, fields=("state", "params", "intermediate_values"), rel=1e-9)
    assert_same_failures(runs)


def test_local_function_referencing_optuna_integration(client):
    """A function defined in a function (or a notebook's ``__main__``) is pickled by value together with
    the globals it uses: here this module's ``optuna_integration``."""

    def objective(trial: optuna.Trial) -> float:
        import numpy as np
        import xgboost as xgb

        data = np.arange(60, dtype=float).reshape(30, 2)
        labels = (data[:, 0] % 4 < 2).astype(int)
        dtrain = xgb.DMatrix(data, label=labels)
        params = {"objective": "binary:logistic", "eval_metric": "logloss", "nthread": 1,
                  "max_depth": trial.suggest_int("max_depth", 1, 3)}  # fmt: skip
        pruning = optuna_integration.XGBoostPruningCallback(trial, "train-logloss")
        xgb.train(params, dtrain, num_boost_round=3, evals=[(dtrain, "train")], callbacks=[pruning], verbose_eval=False)
        return float(params["max_depth"])

    runs = run_both(study_factory(sampler=RANDOM), objective, client, n_trials=2)
    assert counts(runs.plain) == {"COMPLETE": 2}
    assert_same_trials(runs, fields=("state", "params", "values"))


RAISING_OBJECTIVE = """
def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    raise RuntimeError(f"bad x {x:.1f}")
"""


def test_traceback_of_an_objective_shipped_by_value_names_its_file_and_line(client, tmp_path, monkeypatch):
    """cloudpickle renames code shipped by value to "<dynamic-code>"; the stored traceback must still say
    which file and line raised (and show the line, as plain Optuna's log would)."""
    module = _load(tmp_path, RAISING_OBJECTIVE, monkeypatch)
    study = optuna.create_study()
    daskopt.optimize(study, module.objective, n_trials=2, client=client, show_progress_bar=False)
    text = study.trials[0].user_attrs["traceback"]
    assert f'File "{module.__file__}", line 4, in objective' in text
    assert 'raise RuntimeError(f"bad x {x:.1f}")' in text
    assert "<dynamic-code>" not in text
