"""Population Based Training of a small CNN on scikit-learn's bundled ``digits`` images (8x8, 10 classes).

The objective follows the checkpoint contract of daskopt's schedulers (``daskopt.schedulers.PBT``):

1. take the hyperparameters from ``trial.suggest_*`` at the start of each stretch: a member that PBT
   moves on from a better member's checkpoint starts again here, as a new trial with explored values;
2. ``restore_checkpoint`` (epoch 0 and no state when the trial starts fresh), then put the stretch's
   learning rate, momentum and weight decay into the restored optimizer (its state dict carries the values
   of the member it was saved by);
3. every epoch: ``save_checkpoint`` *before* reporting, then report and let the scheduler decide.

Every member starts from the same initial weights (seed 0) and the random state travels in its
checkpoints, so a member's schedule, replayed, gives the same accuracy (``daskopt.schedulers.Replay``).
It also runs unmodified under plain Optuna (no checkpoints then: each trial trains from scratch).

``benchmarks/pbt_digits.py`` trains the same network with the same helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from daskopt.integrations.torch import report_and_prune, restore_checkpoint, save_checkpoint, seed_everything

EPOCHS = 12  # per member; study.toml's last_step is EPOCHS - 1
WIDTH = 16  # channels: fixed, since members copy each other's weights
BATCH_SIZE = 64
SEED = 0  # every member starts from the same weights


_SPLIT: list[tuple[Any, ...]] = []  # filled once per process (functools.cache would travel by reference only)


def arrays() -> tuple[Any, ...]:
    """Train / validation / test split (60/20/20, stratified) of the digits as float32 images in [0, 1]:
    ``x_train, y_train, x_val, y_val, x_test, y_test``; loaded once per worker process."""
    if not _SPLIT:
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
        y = y.astype(np.int64)
        x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=0, stratify=y)
        x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=0, stratify=y_rest)
        _SPLIT.append((x_train, y_train, x_val, y_val, x_test, y_test))
    return _SPLIT[0]


def tensors() -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(a) for a in arrays())


def build_model(width: int = WIDTH) -> Any:
    """conv(width) → conv(2·width) → 2x2 max-pool → linear(10)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, 10),
    )


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, float]:
    """The hyperparameters PBT changes during training (the same ranges as ``study.toml``'s ``[space]``)."""
    return {
        "lr": trial.suggest_float("lr", 1e-3, 0.5, log=True),
        "momentum": trial.suggest_float("momentum", 0.0, 0.99),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
    }


def apply(optimizer: Any, params: dict[str, float]) -> None:
    """Set this stretch's hyperparameters on every parameter group (after ``load_state_dict``, which brings
    back the values the checkpoint was saved with)."""
    for group in optimizer.param_groups:
        group["lr"], group["momentum"], group["weight_decay"] = params["lr"], params["momentum"], params["weight_decay"]


def train_epoch(model: Any, optimizer: Any, x: Any, y: Any, batch_size: int = BATCH_SIZE) -> None:
    """One pass over ``x`` in a random order (drawn from torch's global generator, saved in checkpoints)."""
    import torch

    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(x))
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x[index]), y[index]).backward()
        optimizer.step()


def accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def train(
    trial: optuna.trial.BaseTrial,
    epochs: int = EPOCHS,
    on_epoch: Callable[[int, float, Any], None] | None = None,
    seed: int = SEED,
) -> float:
    """Train from the trial's checkpoint (or from scratch, with initial weights drawn from ``seed``) to
    ``epochs``; returns the validation accuracy.

    ``on_epoch(epoch, accuracy, model)`` is called after each epoch, before its checkpoint and report (the
    benchmark measures test accuracy there)."""
    import torch

    params = suggest(trial)  # 1. this stretch's values
    torch.set_num_threads(1)  # one core per trial: the cluster runs as many trials as it has worker processes
    seed_everything(seed)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"])
    start, _ = restore_checkpoint(trial, model, optimizer)  # 2. (0, {}) when the trial starts fresh
    apply(optimizer, params)
    x_train, y_train, x_val, y_val, _, _ = tensors()
    value = accuracy(model, x_val, y_val) if start >= epochs else float("nan")  # a copy of a finished member
    for epoch in range(start, epochs):
        train_epoch(model, optimizer, x_train, y_train)
        value = accuracy(model, x_val, y_val)
        if on_epoch is not None:
            on_epoch(epoch, value, model)
        save_checkpoint(trial, epoch, model, optimizer)  # 3. before the report: PBT may copy this epoch
        report_and_prune(trial, value, epoch)  # trial.report, then raise TrialPruned when told to stop
    return value


def objective(trial: optuna.trial.BaseTrial) -> float:
    return train(trial)
