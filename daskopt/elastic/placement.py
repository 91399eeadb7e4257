"""What an elastic trial runs with during one stretch: its replicas, total batch and learning-rate factor.

The loop picks them (:mod:`daskopt.engine.elastic`) and sends them with the assignment; the objective reads
them as ``trial.elastic`` (a launched rank as ``launched_trial().elastic``). The learning-rate rules are
here so the loop and the documentation agree on one formula each.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple


class Placement(NamedTuple):
    """One stretch of an elastic trial.

    ``replicas``: its processes (``GPU_SLOT`` units); ``batch_size``: the total batch across them, or
    ``None`` when the study sets no ``initial_batch`` (the objective keeps its own); ``lr_scale``: multiply
    the learning rate tuned at ``initial_batch`` by this (1 without a batch change).

    A stretch whose replicas span several workers names its *group* (``group``, see
    :mod:`daskopt.elastic.parts`) and the slots of the task that runs the objective (``local``): that task
    starts ranks ``0 .. local - 1``, tasks on the other workers start the rest.
    """

    replicas: int
    batch_size: int | None = None
    lr_scale: float = 1.0
    group: str | None = None
    local: int | None = None

    @property
    def local_replicas(self) -> int:
        """The ranks (and slots) of the task that runs the objective."""
        return self.replicas if self.local is None else self.local

    def to_wire(self) -> list[Any]:
        wire: list[Any] = [self.replicas, self.batch_size, self.lr_scale]
        return wire if self.group is None else [*wire, self.group, self.local]

    @classmethod
    def from_wire(cls, data: list[Any] | None) -> Placement | None:
        if data is None:
            return None
        batch = None if data[1] is None else int(data[1])
        if len(data) > 3 and data[3] is not None:
            return cls(int(data[0]), batch, float(data[2]), str(data[3]), int(data[4]))
        return cls(int(data[0]), batch, float(data[2]))

    def shard(self, rank: int) -> int:
        """The examples rank ``rank`` takes of each total batch (the first ``batch % replicas`` take one more)."""
        if self.batch_size is None:
            raise ValueError("this trial has no elastic batch size (set initial_batch in the elastic settings)")
        base, extra = divmod(self.batch_size, self.replicas)
        return base + (1 if rank < extra else 0)


def lr_scale(rule: str, batch: float, initial_batch: float, noise_scale: float | None) -> float:
    """The learning-rate factor for total batch ``batch`` against ``initial_batch`` under ``rule``.

    ``adascale`` is AdaScale's gain ``r = (σ² + μ²) / (σ²/S + μ²)`` at scale ``S = batch / initial_batch``,
    written with the noise scale ``φ = tr(Σ)/|G|²`` as ``(φ/M0 + 1) / (φ/M + 1)``: 1 for noiseless
    gradients, ``S`` (linear) for pure noise; an unmeasured ``φ`` counts as pure noise, as the goodput
    model's efficiency does until it is measured.
    """
    scale = batch / initial_batch
    if rule == "none" or scale == 1:
        return 1.0
    if rule == "linear":
        return scale
    if rule == "sqrt":
        return math.sqrt(scale)
    if rule == "adascale":
        if noise_scale is None:
            return scale
        return (noise_scale / initial_batch + 1) / (noise_scale / batch + 1)
    raise ValueError(f"unknown learning-rate rule {rule!r}")
