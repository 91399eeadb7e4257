"""GPU trials: integer resource slots, the objective wrapper that assigns GPUs, local GPU clusters.

Dask resources are floats updated with ``-=``/``+=``; fractional GPU amounts accumulate rounding errors
(``GPU: 0.9999999999999999``) and tasks then stay pending forever. daskopt therefore counts in integer
units: a worker advertises ``GPU_SLOT = k`` for ``k`` trials at a time on its GPU (or, for multi-GPU
trials, one slot per GPU it owns) and each trial requests ``GPU_SLOT = gpus_per_trial``. Design and
measurements: ``docs/gpu.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daskopt.gpu.trial import GPU_RESOURCE, GpuAssignment, GpuObjective, current, trial_env

__all__ = ["GPU_RESOURCE", "GpuAssignment", "GpuObjective", "current", "prepare", "trial_env"]


def prepare(
    objective: Callable[[Any], Any],
    resources: dict[str, float] | None,
    *,
    gpus_per_trial: int | None = None,
    gpu_memory_fraction: float | None = None,
) -> tuple[Callable[[Any], Any], dict[str, float] | None]:
    """The objective and resource request for ``optimize(..., gpus_per_trial=, gpu_memory_fraction=)``.

    ``gpus_per_trial`` adds ``GPU_SLOT = gpus_per_trial`` to the request; either argument wraps the
    objective in :class:`GpuObjective`. With neither, both are returned unchanged.
    """
    if gpus_per_trial is None and gpu_memory_fraction is None:
        return objective, resources
    if gpus_per_trial is not None and (
        not isinstance(gpus_per_trial, int) or isinstance(gpus_per_trial, bool) or gpus_per_trial < 1
    ):
        raise ValueError(f"gpus_per_trial must be an int >= 1, got {gpus_per_trial!r}")
    if gpu_memory_fraction is not None and not 0 < gpu_memory_fraction <= 1:
        raise ValueError(f"gpu_memory_fraction must be in (0, 1], got {gpu_memory_fraction!r}")
    if gpus_per_trial is not None:
        resources = {**(resources or {}), GPU_RESOURCE: gpus_per_trial}
    from daskopt.objectives.command import CommandObjective

    wrapped = GpuObjective(
        objective,
        gpus_per_trial=gpus_per_trial or 1,
        memory_fraction=gpu_memory_fraction,
        starts_processes=isinstance(objective, CommandObjective),
    )
    return wrapped, resources
