"""A small CNN on scikit-learn's bundled ``digits`` images (8x8, 10 classes; no download), tuned per epoch.

Written for plain Optuna: the objective runs unmodified under ``study.optimize`` and under daskopt. It
reports validation accuracy after each epoch, so ASHA can stop weak configurations early. On a GPU it
trains on the trial's GPU (``daskopt.integrations.torch.device()``), on a CPU with one thread per trial.

The benchmark ``benchmarks/gpu_packing.py`` trains the same network (``train``) at a fixed number of
epochs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import optuna

from daskopt.integrations.torch import EpochReporter, device, seed_everything

EPOCHS = int(os.environ.get("DIGITS_EPOCHS", "8"))


@functools.cache
def _arrays() -> tuple[Any, Any, Any, Any]:
    """Train/validation split as float32 images scaled to [0, 1]; loaded once per worker process."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return tuple(train_test_split(x, y.astype(np.int64), test_size=0.3, random_state=0, stratify=y))  # type: ignore[return-value]


def build_model(width: int, dropout: float) -> Any:
    """conv(width) → conv(2·width) → 2x2 max-pool → dropout → linear(10)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(2 * width * 4 * 4, 10),
    )


def make_optimizer(name: str, parameters: Any, lr: float) -> Any:
    import torch

    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr)
    return torch.optim.Adam(parameters, lr=lr)


def train(
    params: dict[str, Any],
    epochs: int,
    *,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> float:
    """Train the CNN with ``params`` (lr, width, dropout, batch_size, optimizer); returns validation accuracy.

    ``on_epoch(epoch, accuracy)`` is called after every epoch (it may raise ``optuna.TrialPruned``).
    """
    import torch

    seed_everything(seed)
    where = device()
    if where.type == "cpu":
        torch.set_num_threads(1)  # one core per trial: the cluster runs as many trials as it has cores
    x_train, x_val, y_train, y_val = (torch.from_numpy(a).to(where) for a in _arrays())
    model = build_model(int(params["width"]), float(params["dropout"])).to(where)
    optimizer = make_optimizer(str(params["optimizer"]), model.parameters(), float(params["lr"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = int(params["batch_size"])
    generator = torch.Generator(device="cpu").manual_seed(seed)
    accuracy = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(where)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x_train[index]), y_train[index]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x_val).argmax(dim=1) == y_val).float().mean())
        if on_epoch is not None:
            on_epoch(epoch, accuracy)
    return accuracy


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-1, log=True),
        "width": trial.suggest_int("width", 4, 32, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        "optimizer": trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw"]),
    }


def objective(trial: optuna.trial.BaseTrial) -> float:
    params = suggest(trial)
    seed = int(trial.user_attrs.get("seed", trial.number))  # `repeats` set a seed; else one per trial
    return train(params, EPOCHS, seed=seed, on_epoch=EpochReporter(trial).step)
