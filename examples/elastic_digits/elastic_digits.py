"""Elastic trials of a small CNN on scikit-learn's bundled ``digits`` images: each trial trains on a number
of gloo ranks (GPUs on a GPU machine) that daskopt changes while it runs.

Each rank (``train``) follows the elastic contract:

1. ``trial = launched_trial()``: this stretch's ``elastic`` placement (replicas, total batch, learning-rate
   factor) and the trial's checkpoints;
2. start from ``trial.load_checkpoint()`` (weights, optimizer, how many examples were seen), so a trial
   restarted at another size goes on mid-epoch, from the example it had reached;
3. each step: its shard of the total batch, ``backward()``, ``average_gradients`` (the mean over the
   ranks, and the gradient noise scale from it), ``optimizer.step()``;
4. every ``REPORT_EVERY`` steps: a checkpoint, then ``trial.profile`` (seconds per step, the noise scale,
   the steps left) and ``trial.report`` (validation accuracy). A resize happens at such a report.
"""

from __future__ import annotations

import math
import time
from typing import Any

import optuna

from daskopt.integrations.torch import (
    NoiseScaleMeter,
    average_gradients,
    launch,
    launched_trial,
    seed_everything,
)

EPOCHS = 8
WIDTH = 32  # channels
REPORT_EVERY = 4  # steps between reports (and checkpoints): where a trial may be resized
INITIAL_BATCH = 64  # the total batch the hyperparameters are for ([elastic] initial_batch)

_SPLIT: list[tuple[Any, ...]] = []


def arrays() -> tuple[Any, ...]:
    """Train / validation split (75/25, stratified) of the digits as float32 arrays, once per worker
    process; the ranks get them with their arguments (so they never import scikit-learn)."""
    if not _SPLIT:
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
        x_train, x_val, y_train, y_val = train_test_split(
            x, y.astype(np.int64), test_size=0.25, random_state=0, stratify=y
        )
        _SPLIT.append((x_train, y_train, x_val, y_val))
    return _SPLIT[0]


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


def batch_indices(seen: int, batch: int, n: int) -> Any:
    """The examples of the total batch that starts after ``seen`` examples: a new order every epoch (seeded
    by the epoch), so any world size, resumed at any point, reads the same sequence."""
    import torch

    epoch, offset = divmod(seen, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
    return order[(offset + torch.arange(batch)) % n]


def train(local_rank: int, lr: float, momentum: float, epochs: int, data: tuple[Any, ...]) -> float:
    import torch

    trial = launched_trial()  # 1.
    rank, placement = trial.rank, trial.elastic  # the rank in the group: replicas may span workers
    torch.set_num_threads(1)
    seed_everything(0)
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    state = trial.load_checkpoint() or {"seen": 0, "report": -1}  # 2.
    if "model" in state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:  # this stretch's learning rate, for its batch
        group["lr"] = lr * placement.lr_scale
    x_train, y_train, x_val, y_val = (torch.from_numpy(a) for a in data)
    n, batch = len(x_train), placement.batch_size
    lo = sum(placement.shard(r) for r in range(rank))
    mine = placement.shard(rank)
    meter, loss_fn = NoiseScaleMeter(model), torch.nn.CrossEntropyLoss()
    total, seen, report, spent, steps = epochs * n, state["seen"], state["report"], 0.0, 0
    value = float("nan")
    while seen < total:
        started = time.perf_counter()
        index = batch_indices(seen, batch, n)[lo : lo + mine]  # 3.
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x_train[index]), y_train[index]).backward()
        noise = average_gradients(model, batch=mine, noise=meter)
        optimizer.step()
        spent, steps, seen = spent + time.perf_counter() - started, steps + 1, seen + batch
        if steps % REPORT_EVERY == 0 or seen >= total:  # 4.
            model.eval()
            with torch.no_grad():
                value = float((model(x_val).argmax(dim=1) == y_val).float().mean())
            report += 1
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "seen": seen,
                "report": report,
            }
            trial.save_checkpoint(checkpoint, report)
            left = math.ceil(max(0, total - seen) / batch)
            trial.profile(spent / steps, batch=batch, noise_scale=noise, remaining_steps=left)
            trial.report(value, report)
    return value


def objective(trial: optuna.trial.BaseTrial) -> float:
    lr = trial.suggest_float("lr", 0.01, 0.5, log=True)
    momentum = trial.suggest_float("momentum", 0.0, 0.95)
    return float(launch(train, args=(lr, momentum, EPOCHS, arrays()), trial=trial))  # trial.elastic.replicas ranks
