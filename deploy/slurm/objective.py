"""A small GPU-aware objective for trying the SLURM setups; replace it with your training code.

With torch and a GPU it multiplies matrices on the worker's GPU (dask-cuda pins one GPU per worker
process through CUDA_VISIBLE_DEVICES); otherwise it runs the same loop on the CPU.
"""

from __future__ import annotations

import math

import optuna


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    layers = trial.suggest_int("layers", 1, 8)
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        weights = torch.randn(512, 512, device=device)
    except ImportError:
        torch = None
    loss = math.inf
    for epoch in range(30):
        if torch is not None:
            for _ in range(layers):
                weights = torch.tanh(weights @ weights.T / 512)
        loss = abs(math.log10(lr) + 3) + 0.1 * abs(layers - 4) + math.exp(-0.2 * epoch)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss
