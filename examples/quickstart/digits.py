"""Quickstart objective: a linear classifier on scikit-learn's bundled digits, trained epoch by epoch.

Written for plain Optuna: it runs unmodified under ``study.optimize`` and under daskopt. Each epoch
reports validation accuracy, so the pruner can stop weak configurations early.
"""

from __future__ import annotations

import functools
import warnings

import optuna


@functools.cache
def _data():  # loaded once per worker process
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_val), y_train, y_val


def objective(trial: optuna.Trial) -> float:
    from sklearn.linear_model import SGDClassifier

    x_train, x_val, y_train, y_val = _data()
    model = SGDClassifier(
        loss=trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"]),
        alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
        eta0=trial.suggest_float("eta0", 1e-4, 1.0, log=True),
        learning_rate=trial.suggest_categorical("learning_rate", ["constant", "optimal", "adaptive"]),
        random_state=trial.number,
    )
    accuracy = 0.0
    for epoch in range(20):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(x_train, y_train, classes=list(range(10)))
        accuracy = float(model.score(x_val, y_val))
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return accuracy
