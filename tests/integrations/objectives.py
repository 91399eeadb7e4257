"""Objectives for the GPU placement and torch integration tests, importable by worker processes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import optuna

from daskopt import gpu


def gpu_probe(trial: optuna.trial.BaseTrial) -> float:
    """Records the trial's GPU assignment, its process and its running interval; sleeps so trials overlap."""
    started = time.time()
    assignment = gpu.current()
    assert assignment is not None, "not run through daskopt's GPU wrapper"
    trial.set_user_attr("devices", list(assignment.devices))
    trial.set_user_attr("ordinals", list(assignment.ordinals))
    trial.set_user_attr("process_fraction", assignment.process_fraction)
    trial.set_user_attr("trials_per_process", assignment.trials_per_process)
    trial.set_user_attr("visible", os.environ.get("CUDA_VISIBLE_DEVICES"))
    trial.set_user_attr("pid", os.getpid())
    time.sleep(1.2)  # long against dispatch on two busy cores, so slots that can overlap do
    trial.set_user_attr("interval", [started, time.time()])
    return 0.0


def rank_sum(rank: int, scale: float) -> dict[str, Any]:
    """One rank of a launched trial: all_reduce of ``scale * (rank + 1)``; rank 0 reports it."""
    import torch
    import torch.distributed as dist

    from daskopt.integrations.torch import device, report

    value = torch.tensor([scale * (rank + 1)], device=device())
    dist.all_reduce(value)
    seen: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(seen, {"rank": dist.get_rank(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES")})
    if rank == 0:
        report(float(value.item()), 0)
    return {"sum": float(value.item()), "ranks": seen, "world": dist.get_world_size()}


def rank_fails(rank: int) -> int:
    if rank == 1:
        raise ValueError("rank one gives up")
    import torch.distributed as dist

    dist.barrier()  # rank 0 would wait here forever: launch must stop it
    return rank


def rank_reports_forever(rank: int, folder: str) -> None:
    from daskopt.integrations.torch import report

    Path(folder, f"pid-{rank}").write_text(str(os.getpid()))
    for step in range(600):
        if rank == 0:
            report(float(step), step)
        time.sleep(0.1)


def distributed_objective(trial: optuna.trial.BaseTrial) -> float:
    """A multi-GPU trial on CPU: two gloo ranks; the value is rank 0's all_reduce result."""
    from daskopt.integrations.torch import launch

    scale = trial.suggest_float("scale", 1.0, 2.0)
    result = launch(rank_sum, args=(scale,), trial=trial)
    trial.set_user_attr("ranks", result["ranks"])
    trial.set_user_attr("devices", list(gpu.current().devices))  # type: ignore[union-attr]
    return float(result["sum"])


def most_at_once(trials: list[optuna.trial.FrozenTrial]) -> int:
    """The most trials whose recorded ``interval`` user attributes overlap at one instant."""
    starts = [(t.user_attrs["interval"][0], 1) for t in trials]
    ends = [(t.user_attrs["interval"][1], -1) for t in trials]
    running = peak = 0
    for _, change in sorted(starts + ends):
        running += change
        peak = max(peak, running)
    return peak
