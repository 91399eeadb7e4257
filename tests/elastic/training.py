"""A deterministic data-parallel training for elastic-trial tests: linear regression by SGD on fixed data,
run as gloo ranks by ``daskopt.integrations.torch.launch``.

Global step ``k`` uses examples ``k·M .. k·M + M - 1`` (mod N) of the data whatever the world size, each rank
taking its shard of them and the gradients summed by ``all_reduce``: the same arithmetic on 1, 2 or 3
replicas, so a trial resized mid-run ends where an unresized one does (up to float64 rounding). The
simulated step time says that 2 or more replicas are slow, so the allocator first grows a lone trial (it
assumes perfect scaling until it measures) and then shrinks it again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna

N, D, BATCH = 96, 5, 16
FAST_S, SLOW_S = 0.02, 0.3  # what trial.profile says a step takes on one replica, and on more


def data() -> tuple[Any, Any]:
    import torch

    generator = torch.Generator().manual_seed(7)
    x = torch.randn(N, D, generator=generator, dtype=torch.float64)
    y = x @ torch.arange(1, D + 1, dtype=torch.float64) + 0.1 * torch.randn(N, generator=generator, dtype=torch.float64)
    return x, y


def loss(w: Any) -> float:
    x, y = data()
    return float(((x @ w - y) ** 2).mean())


def gradient(w: Any, step: int, lo: int, hi: int) -> Any:
    """The gradient of the mean squared error of global batch ``step``, over its examples ``lo .. hi - 1``."""
    import torch

    x, y = data()
    index = (step * BATCH + torch.arange(lo, hi)) % N
    xs, ys = x[index], y[index]
    return xs.T @ (xs @ w - ys) * (2.0 / BATCH)


def reference(lr: float, steps: int) -> list[float]:
    """The losses of an unresized, single-process run."""
    import torch

    w, losses = torch.zeros(D, dtype=torch.float64), []
    for step in range(steps):
        w = w - lr * gradient(w, step, 0, BATCH)
        losses.append(loss(w))
    return losses


def train_rank(
    local_rank: int, lr: float, steps: int, sleep_s: float, marker: str | None = None, hold_s: float = 0.0
) -> float:
    """One rank of an elastic trial: resumes from its checkpoint, checkpoints and reports every step. With
    ``marker`` (a folder), rank 0 of a stretch that resumes says so there and, while a file ``hold`` is in
    that folder (``hold_s`` at most), waits before its first step: a restart in flight, for a test to break."""
    import torch
    import torch.distributed as dist

    from daskopt.integrations.torch import launched_trial

    trial = launched_trial()
    rank = trial.rank  # in the group; ``local_rank`` counts this worker's ranks when they span workers
    placement = trial.elastic
    world = trial.world_size
    state = trial.load_checkpoint() or {"w": torch.zeros(D, dtype=torch.float64)}
    w = state["w"]
    start = 0 if trial.resume_step is None else trial.resume_step + 1
    if marker is not None and trial.resume_step is not None and rank == 0:
        Path(marker, f"resumed-{trial.number}-{start}-{world}").touch()
        deadline = time.monotonic() + hold_s
        while Path(marker, "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    lo = sum(placement.shard(r) for r in range(rank))
    hi = lo + placement.shard(rank)
    value = loss(w)
    for step in range(start, steps):
        grad = gradient(w, step, lo, hi)
        dist.all_reduce(grad)
        w = w - lr * placement.lr_scale * grad
        time.sleep(sleep_s)
        value = loss(w)
        trial.save_checkpoint({"w": w}, step)
        trial.profile(FAST_S if world == 1 else SLOW_S, remaining_steps=steps - step - 1)
        trial.report(value, step)
    return value


def elastic_objective(trial: optuna.trial.BaseTrial, marker: str | None = None, hold_s: float = 0.0) -> float:
    """``steps`` of SGD on ``trial.elastic.replicas`` gloo ranks."""
    from daskopt.integrations.torch import launch

    lr = trial.suggest_float("lr", 0.001, 0.1, log=True)
    steps = trial.suggest_int("steps", 1, 200)
    sleep_s = trial.suggest_float("sleep_s", 0.0, 1.0)
    return float(launch(train_rank, args=(lr, steps, sleep_s, marker, hold_s), trial=trial))


def _rank_that_raises(local_rank: int, failing: int) -> float:
    import torch
    import torch.distributed as dist

    from daskopt.integrations.torch import launched_trial

    rank = launched_trial().rank
    if rank == failing:
        raise ValueError(f"rank {rank} could not load its shard")
    value = torch.ones(1)
    dist.all_reduce(value)  # the other ranks wait in a collective for the one that failed
    return float(value)


def failing_rank_objective(trial: optuna.trial.BaseTrial) -> float:
    """Two replicas; the last rank raises before its first collective (a bug in the training function)."""
    from daskopt.integrations.torch import launch

    return float(launch(_rank_that_raises, args=(trial.elastic.replicas - 1,), trial=trial))
