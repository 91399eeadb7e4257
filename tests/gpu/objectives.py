"""Objectives for the GPU tests: each records where it ran, as seen from inside the trial."""

from __future__ import annotations

import os
import time

import optuna

from daskopt import gpu


def cuda_probe(trial: optuna.trial.BaseTrial) -> float:
    """Device placement from inside the trial; keeps the GPU busy for ~1 s so packed trials overlap."""
    import torch

    from daskopt.integrations.torch import device

    started = time.time()
    where = device()
    trial.set_user_attr("device", str(where))
    trial.set_user_attr("current_device", torch.cuda.current_device())
    trial.set_user_attr("visible", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    trial.set_user_attr("uuid", str(torch.cuda.get_device_properties(where).uuid))
    trial.set_user_attr("pid", os.getpid())
    a = torch.randn(1024, 1024, device=where)
    deadline = time.time() + 1.0
    while time.time() < deadline:
        a = torch.tanh(a @ a.T / 1024)
        torch.cuda.synchronize(where)
    trial.set_user_attr("interval", [started, time.time()])
    return float(a.mean())


def memory_cap_probe(trial: optuna.trial.BaseTrial) -> float:
    """1.0 when an allocation above the trial's share fails and one well below it succeeds."""
    import torch

    from daskopt.integrations.torch import device

    where = device()
    assignment = gpu.current()
    share = assignment.memory_fraction if assignment is not None else None
    trial.set_user_attr("share", share)
    trial.set_user_attr("process_fraction", assignment.process_fraction if assignment is not None else None)
    total = torch.cuda.get_device_properties(where).total_memory
    small = torch.empty(int(0.02 * total), dtype=torch.uint8, device=where)
    try:
        big = torch.empty(int(0.6 * total), dtype=torch.uint8, device=where)
    except torch.cuda.OutOfMemoryError:
        refused = True
    else:
        refused = False
        del big
    del small
    torch.cuda.empty_cache()
    trial.set_user_attr("big_refused", refused)
    return 1.0 if refused else 0.0
