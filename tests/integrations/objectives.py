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


TORCH_EPOCHS = 9


def torch_regression(trial: optuna.trial.BaseTrial) -> float:
    """A linear model fitted by SGD with momentum, one epoch per report, saved and restored with
    daskopt.integrations.torch; deterministic, so a paused and resumed run ends where an unpaused one does."""
    import torch

    from daskopt.integrations.torch import restore_checkpoint, save_checkpoint

    lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(64, generator=generator)
    torch.manual_seed(1)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    start, extra = restore_checkpoint(trial, model, optimizer)
    epochs_run = extra.get("epochs_run", 0)
    loss = float("nan")
    for epoch in range(start, TORCH_EPOCHS):
        for batch in range(4):
            optimizer.zero_grad()
            rows = slice(batch * 16, batch * 16 + 16)
            batch_loss = torch.nn.functional.mse_loss(model(x[rows]).squeeze(1), y[rows])
            batch_loss.backward()
            optimizer.step()
        epochs_run += 1
        with torch.no_grad():
            loss = float(torch.nn.functional.mse_loss(model(x).squeeze(1), y))
        save_checkpoint(trial, epoch, model, optimizer, epochs_run=epochs_run)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("epochs_run", epochs_run)
    return loss


def rank_averages_gradients(rank: int, steps: int) -> dict[str, Any]:
    """Linear regression on noisy targets, 2 ranks of 32 examples each per step: the averaged gradient,
    and the noise scale measured from the ranks' own gradients against their mean."""
    import torch
    import torch.distributed as dist

    from daskopt.integrations.torch import NoiseScaleMeter, average_gradients

    generator = torch.Generator().manual_seed(0)
    n, dim, b = 4096, 8, 32
    x = torch.randn(n, dim, generator=generator)
    y = x @ torch.ones(dim) + 3.0 * torch.randn(n, generator=generator)
    model = torch.nn.Linear(dim, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    meter = NoiseScaleMeter(model, smoothing=0.98)
    first = None
    for step in range(steps):
        rows = torch.randint(0, n, (2 * b,), generator=generator)  # the same draw on both ranks
        mine = rows[rank * b : (rank + 1) * b]
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x[mine]).squeeze(1), y[mine]).backward()
        phi = average_gradients(model, batch=b, noise=meter)
        if step == 0:
            first = {"averaged": model.weight.grad.clone(), "rows": rows}
    assert first is not None
    model.zero_grad()
    rows = first["rows"]
    torch.nn.functional.mse_loss(model(x[rows]).squeeze(1), y[rows]).backward()
    return {
        "matches": bool(torch.allclose(first["averaged"], model.weight.grad, atol=1e-5)),
        "phi": phi,
        "world": dist.get_world_size(),
    }


def rank_parent(rank: int) -> dict[str, int]:
    """Who started this rank: the launch zygote, or the launching process itself."""
    return {"ppid": os.getppid(), "pid": os.getpid()}


def rank_waits_for(rank: int, folder: str) -> None:
    """Says it runs (its pid in ``folder``), then waits to be killed."""
    Path(folder, f"rank-{rank}").write_text(str(os.getpid()))
    time.sleep(300)
