"""Objectives for the tracking tests, importable by worker processes."""

from __future__ import annotations

import optuna


def logs_metrics(trial: optuna.Trial) -> float:
    """Reports ``x**2 + 4 - step`` for 5 steps and logs an extra ``train_loss`` at each step."""
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("y", 0, 3)
    for step in range(5):
        trial.report(x**2 + 4 - step, step)
        trial.log({"train_loss": float(10 * trial.number + step)}, step=step)  # type: ignore[attr-defined]
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x**2 + y
