"""Objectives, samplers and data for the usage-pattern conformance tests, importable by worker processes.

Each objective is written the way Optuna's published patterns write theirs (report / should_prune /
raise ``TrialPruned``, ``report_cross_validation_scores``, the integration pruning callbacks), on tiny
deterministic data so that a plain Optuna run and a daskopt run can be compared.
"""

from __future__ import annotations

import functools
import math
import random
import time
from typing import Any

import numpy as np
import optuna
import optuna_integration
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace


# --------------------------------------------------------------------------------- pruning
def training_curve(trial: optuna.Trial, epochs: int = 8) -> float:
    """A loss that falls for four epochs then creeps up (overfitting), lower for lr near 0.3 and for
    ``layers`` == 2; pruned the usual way."""
    lr = trial.suggest_float("lr", 0.0, 1.0)
    layers = trial.suggest_int("layers", 1, 3)
    loss = 0.0
    for epoch in range(epochs):
        loss = (lr - 0.3) ** 2 + 0.05 * abs(layers - 2) + 1.0 / (min(epoch, 3) + 1) + 0.01 * max(0, epoch - 3)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")
    return loss


N_INSTANCES = 12


def instance_losses(trial: optuna.Trial) -> float:
    """The WilcoxonPruner pattern: one loss per problem instance, reported with the instance id as step,
    instances taken in a shuffled order; when pruned, return the mean of the losses so far."""
    x = trial.suggest_float("x", 0.0, 1.0)
    order = list(range(N_INSTANCES))
    random.Random(trial.number).shuffle(order)
    losses = []
    for instance in order:
        loss = (x - 0.3) ** 2 * (1.0 + 0.5 * math.sin(instance)) + 0.2 * math.sin(instance) ** 2
        losses.append(loss)
        trial.report(loss, instance)
        if trial.should_prune():
            break
    return sum(losses) / len(losses)


def sleeps(trial: optuna.Trial, seconds: float = 0.05) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep(seconds)
    return x


def reports_then_sleeps(trial: optuna.Trial, seconds: float = 2.0) -> float:
    """Reports once, then works for ``seconds`` checking ``should_prune`` every 50 ms."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.report(x, 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if trial.should_prune():
            raise optuna.TrialPruned("told to stop")
    return x


# ------------------------------------------------------------------------------ terminator
def cross_validated(trial: optuna.Trial) -> float:
    """Five noisy 'fold scores' per configuration, reported for the Terminator's error estimate."""
    from optuna.terminator import report_cross_validation_scores

    x = trial.suggest_float("x", -3.0, 3.0)
    y = trial.suggest_float("y", -3.0, 3.0)
    base = 1.0 / (1.0 + (x - 1.0) ** 2 + (y + 0.5) ** 2)
    scores = [base + 0.5 * math.sin(7.0 * x + fold) for fold in range(5)]
    report_cross_validation_scores(trial, scores)
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------- samplers
def sphere(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -4.0, 4.0)
    y = trial.suggest_float("y", -4.0, 4.0)
    return (x - 1.0) ** 2 + (y + 2.0) ** 2


def sphere_shifted(trial: optuna.Trial) -> float:
    """The warm-start target: a task close to :func:`sphere`."""
    x = trial.suggest_float("x", -4.0, 4.0)
    y = trial.suggest_float("y", -4.0, 4.0)
    return (x - 1.2) ** 2 + (y + 1.8) ** 2


def mixed_space(trial: optuna.Trial) -> float:
    """Float, int and categorical parameters, one of them conditional."""
    kind = trial.suggest_categorical("kind", ["linear", "tree"])
    if kind == "linear":
        scale = trial.suggest_float("scale", 1e-3, 10.0, log=True)
        value = abs(math.log10(scale))
    else:
        depth = trial.suggest_int("depth", 1, 8)
        value = abs(depth - 5) / 2.0
    return value + trial.suggest_float("shared", 0.0, 1.0)


class WalkSampler(BaseSampler):
    """A user-written sampler: around the best trial so far on the joint (intersection) space, random
    elsewhere; it logs every hook the study calls, to check that they come in Optuna's order."""

    def __init__(self, seed: int = 0, step: float = 0.3) -> None:
        self._rng = np.random.RandomState(seed)
        self._step = step
        self._space = IntersectionSearchSpace()
        self.log: list[tuple[Any, ...]] = []

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        space = self._space.calculate(study)
        return {name: d for name, d in space.items() if isinstance(d, optuna.distributions.FloatDistribution)}

    def sample_relative(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        self.log.append(("relative", trial.number, len(complete), sorted(search_space)))
        if not search_space or not complete:
            return {}
        best = min(complete, key=lambda t: t.value)
        params = {}
        for name, distribution in search_space.items():
            value = best.params[name] + self._rng.normal(0.0, self._step)
            params[name] = float(np.clip(value, distribution.low, distribution.high))
        return params

    def sample_independent(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str, distribution: Any
    ) -> Any:
        self.log.append(("independent", trial.number, name))
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            return distribution.choices[self._rng.randint(len(distribution.choices))]
        if isinstance(distribution, optuna.distributions.IntDistribution):
            return int(self._rng.randint(distribution.low, distribution.high + 1))
        if distribution.log:
            return float(math.exp(self._rng.uniform(math.log(distribution.low), math.log(distribution.high))))
        return float(self._rng.uniform(distribution.low, distribution.high))

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.log.append(("before", trial.number))

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: Any, values: Any) -> None:
        self.log.append(("after", trial.number, state.name, None if values is None else list(values)))


class SlowSampler(optuna.samplers.RandomSampler):
    """A sampler whose every ask takes a few milliseconds (a model fit, say)."""

    def __init__(self, seed: int = 0, ask_s: float = 0.004) -> None:
        super().__init__(seed=seed)
        self._ask_s = ask_s

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        time.sleep(self._ask_s)


# ----------------------------------------------------------------------------- constraints
def constrained(trial: optuna.Trial) -> float:
    """Minimize the distance to (1, 1) subject to x + y <= 1 (the constraint travels in a user attr)."""
    x = trial.suggest_float("x", -2.0, 2.0)
    y = trial.suggest_float("y", -2.0, 2.0)
    trial.set_user_attr("constraint", [x + y - 1.0])
    return (x - 1.0) ** 2 + (y - 1.0) ** 2


def constrained_two_objectives(trial: optuna.Trial, set_constraint: bool = False) -> tuple[float, float]:
    """Two objectives subject to x + y <= 1.5, as a user attr for ``constraints_func`` or through
    Optuna 5's ``trial.set_constraint``."""
    x = trial.suggest_float("x", 0.0, 2.0)
    y = trial.suggest_float("y", 0.0, 2.0)
    if set_constraint:
        trial.set_constraint("sum", x + y - 1.5)
    else:
        trial.set_user_attr("constraint", [x + y - 1.5])
    return x**2 + y**2, (x - 2.0) ** 2 + (y - 2.0) ** 2


def constraints_from_user_attrs(trial: optuna.trial.FrozenTrial) -> list[float]:
    return list(trial.user_attrs["constraint"])


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    """Binh-Korn-like: a trade-off between two quadratics, with a categorical knob."""
    x = trial.suggest_float("x", 0.0, 5.0)
    y = trial.suggest_float("y", 0.0, 3.0)
    penalty = trial.suggest_categorical("penalty", [0.0, 1.0])
    return 4 * x**2 + 4 * y**2 + penalty, (x - 5) ** 2 + (y - 5) ** 2 + penalty


# --------------------------------------------------------------------------------- learners
@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data, target = load_digits(return_X_y=True)
    return data[:300], target[:300]


def svc_digits(trial: optuna.Trial) -> float:
    """scikit-learn: an SVC on a slice of digits, scored by 3-fold cross-validation."""
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC

    data, target = digits()
    model = SVC(
        C=trial.suggest_float("C", 1e-2, 1e2, log=True), gamma=trial.suggest_float("gamma", 1e-4, 1e-2, log=True)
    )
    return float(cross_val_score(model, data, target, cv=3).mean())


@functools.cache
def cancer_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data, target = load_breast_cancer(return_X_y=True)
    return tuple(train_test_split(data, target, test_size=0.3, random_state=0))  # type: ignore[return-value]


def xgboost_pruned(trial: optuna.Trial) -> float:
    """XGBoost with ``optuna_integration.XGBoostPruningCallback`` on the validation logloss."""
    import xgboost as xgb

    train_x, valid_x, train_y, valid_y = cancer_split()
    dtrain = xgb.DMatrix(train_x, label=train_y)
    dvalid = xgb.DMatrix(valid_x, label=valid_y)
    params = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "nthread": 1,
        "seed": 0,
        "tree_method": "hist",
        "max_depth": trial.suggest_int("max_depth", 1, 6),
        "eta": trial.suggest_float("eta", 0.01, 1.0, log=True),
    }
    pruning = optuna_integration.XGBoostPruningCallback(trial, "validation-logloss")
    booster = xgb.train(
        params, dtrain, num_boost_round=12, evals=[(dvalid, "validation")], callbacks=[pruning], verbose_eval=False
    )
    predictions = booster.predict(dvalid)
    return float(np.mean((predictions > 0.5) != valid_y))


def lightgbm_pruned(trial: optuna.Trial) -> float:
    """LightGBM with ``optuna_integration.LightGBMPruningCallback`` on the validation binary logloss."""
    import lightgbm as lgb

    train_x, valid_x, train_y, valid_y = cancer_split()
    dtrain = lgb.Dataset(train_x, label=train_y)
    dvalid = lgb.Dataset(valid_x, label=valid_y, reference=dtrain)
    params = {
        "objective": "binary",
        "metric": "binary_logloss",
        "verbosity": -1,
        "num_threads": 1,
        "deterministic": True,
        "force_col_wise": True,
        "seed": 0,
        "num_leaves": trial.suggest_int("num_leaves", 2, 16),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 1.0, log=True),
    }
    pruning = optuna_integration.LightGBMPruningCallback(trial, "binary_logloss")
    booster = lgb.train(params, dtrain, num_boost_round=12, valid_sets=[dvalid], callbacks=[pruning])
    predictions = booster.predict(valid_x)
    return float(np.mean((predictions > 0.5) != valid_y))
