"""A noisy objective for the repeats workflow: how much of a difference between configurations is noise?

The "validation loss" is a smooth function of the parameters plus noise drawn from the trial's seed, the
way a real training run varies with its initialization and data order. Enqueued configurations run
``repeats`` times with ``trial.user_attrs["seed"]`` = ``seed_base``, ``seed_base + 1``, ...; other trials
(sampled by TPE) have no seed attribute and use their trial number.
"""

from __future__ import annotations

import time

import numpy as np
import optuna


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    width = trial.suggest_int("width", 32, 512, log=True)
    weight_decay = trial.suggest_float("weight_decay", 0.0, 0.1)
    seed = int(trial.user_attrs.get("seed", trial.number))
    rng = np.random.default_rng(seed)

    floor = 0.2 + 0.15 * np.log10(lr / 3e-3) ** 2 + 0.05 * np.log2(width / 128) ** 2 + 0.5 * weight_decay
    noise_scale = 0.02 + 0.2 * lr  # larger learning rates make runs less reproducible
    loss = float("inf")
    for epoch in range(10):
        time.sleep(0.01)
        loss = float(floor + np.exp(-0.4 * (epoch + 1)) + rng.normal(0.0, noise_scale))
        trial.report(loss, epoch)
        if trial.should_prune():  # never true for a repeat: daskopt turns pruning off for them
            raise optuna.TrialPruned()
    return loss
