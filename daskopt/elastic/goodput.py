"""How much useful training a trial gets from ``g`` replicas: its goodput (the Pollux model, Qiao et al.,
OSDI '21; AdaptDL's published design), written for daskopt's allocator.

    goodput(g, M) = throughput(g, M) × efficiency(M)

- ``throughput``: examples per second with ``g`` replicas and a total batch ``M`` (``m = M / g`` each).
  One step costs the gradient computation of ``m`` examples, ``t_grad = α + β·m``, plus the gradient
  synchronisation across replicas, ``t_sync = α_s + β_s·(g - 2)`` for ``g > 1`` (0 for one replica).
  Pollux overlaps the two with a learned exponent; here they add up (no overlap: a conservative choice
  that keeps the fit a linear least-squares problem). The four coefficients are fitted online from the
  step times the trial measures (:class:`StepTimeModel`), as many as the configurations seen can tell
  apart: until a configuration with several replicas has been seen, synchronisation is assumed free, so
  the allocator tries more replicas and learns; after one multi-replica size, it is assumed to grow
  with every further replica, so it does not grow a trial further on a guess.
- ``efficiency``: how much progress one example buys at batch ``M`` compared with the batch ``M0`` the
  trial was tuned for: ``(φ + M0) / (φ + M)``, with ``φ`` the gradient noise scale (McCandlish et al.,
  2018), measured during training (:class:`GradientNoiseScale`, fed by
  ``daskopt.integrations.torch.NoiseScaleMeter``). A large ``φ`` (noisy gradients) makes big batches
  nearly as good per example as small ones, so extra replicas pay; a small one makes them wasteful.

For each ``g`` the batch is chosen to maximise goodput within the trial's limits, which is how Pollux
co-adapts the batch size with the allocation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepTimeModel:
    """Seconds per optimisation step as a function of replicas ``g`` and per-replica batch ``m``, fitted to
    measured steps: ``t = α + β·m + [g > 1]·(α_s + β_s·(g - 2))``."""

    alpha: float = 0.0
    beta: float = 0.0
    alpha_sync: float = 0.0
    beta_sync: float = 0.0
    observations: list[tuple[int, float, float]] = field(default_factory=list)  # (g, m, seconds)

    def observe(self, replicas: int, per_replica_batch: float, seconds: float) -> None:
        """One measured step (or the mean of several at the same configuration); refits the model."""
        if replicas < 1 or per_replica_batch <= 0 or not seconds > 0:
            raise ValueError(
                f"a step needs replicas >= 1, a positive batch and time, got {replicas}, {per_replica_batch}, {seconds}"
            )
        self.observations.append((replicas, float(per_replica_batch), float(seconds)))
        self._fit()

    def _fit(self) -> None:
        """Least squares over the coefficients the configurations seen can tell apart, in this order: the
        per-example cost ``β`` first; then a synchronisation cost, assumed to grow by the same amount with
        each replica (``α_s = β_s``: pessimistic) until two multi-replica sizes separate the two; the
        per-step intercept ``α`` once the batch has varied at one replica count (before that ``α = 0``: the
        step is assumed to shrink with the per-replica batch, so more replicas are tried and measured).
        A first fit with two sizes and the same total batch cannot tell a fixed step cost from a
        synchronisation cost; charging the difference to synchronisation keeps the allocator from growing a
        trial on a guess it has already seen fail."""
        g, m, t = (np.array(column, dtype=float) for column in zip(*self.observations, strict=True))
        multi = g > 1
        sizes = set(g[multi].tolist())
        same_g_batches = max(len(set(m[g == size].tolist())) for size in set(g.tolist()))
        names, columns = ["beta"], [m]
        if len(sizes) >= 2:
            names += ["alpha_sync", "beta_sync"]
            columns += [multi.astype(float), np.where(multi, g - 2, 0.0)]
        elif sizes:
            names.append("sync")
            columns.append(np.where(multi, g - 1, 0.0))
        if same_g_batches >= 2:
            names.append("alpha")
            columns.append(np.ones_like(m))
        coefficients, *_ = np.linalg.lstsq(np.stack(columns, axis=1), t, rcond=None)
        fitted = dict(zip(names, np.maximum(coefficients, 0.0).tolist(), strict=True))  # times never shrink
        self.alpha, self.beta = fitted.get("alpha", 0.0), fitted["beta"]
        self.alpha_sync = fitted.get("alpha_sync", fitted.get("sync", 0.0))
        self.beta_sync = fitted.get("beta_sync", fitted.get("sync", 0.0))

    def seconds(self, replicas: int, per_replica_batch: float) -> float:
        sync = self.alpha_sync + self.beta_sync * (replicas - 2) if replicas > 1 else 0.0
        return self.alpha + self.beta * per_replica_batch + sync

    @property
    def fitted(self) -> bool:
        return bool(self.observations)


@dataclass
class GradientNoiseScale:
    """The gradient noise scale ``φ = tr(Σ) / |G|²``, from squared gradient norms at two batch sizes.

    With ``|g_b|²`` the squared norm of a gradient over ``b`` examples, ``E|g_b|² = |G|² + tr(Σ)/b``, so two
    batch sizes give both terms; the estimates are smoothed with an exponential moving average, as in
    McCandlish et al. (the ratio of averages, not the average of ratios)."""

    smoothing: float = 0.9
    _grad_sq: float | None = None  # |G|², smoothed
    _trace: float | None = None  # tr(Σ), smoothed

    def observe(self, small_batch: float, small_sq_norm: float, big_batch: float, big_sq_norm: float) -> None:
        if not 0 < small_batch < big_batch:
            raise ValueError(f"need 0 < small_batch < big_batch, got {small_batch}, {big_batch}")
        grad_sq = (big_batch * big_sq_norm - small_batch * small_sq_norm) / (big_batch - small_batch)
        trace = (small_sq_norm - big_sq_norm) / (1 / small_batch - 1 / big_batch)
        s = self.smoothing
        self._grad_sq = grad_sq if self._grad_sq is None else s * self._grad_sq + (1 - s) * grad_sq
        self._trace = trace if self._trace is None else s * self._trace + (1 - s) * trace

    def assume(self, noise_scale: float) -> None:
        """Take ``φ`` as measured elsewhere (a trial smooths its own estimate and sends the value)."""
        self._grad_sq, self._trace = 1.0, float(noise_scale)

    @property
    def value(self) -> float | None:
        """``φ`` in examples, or ``None`` before a usable estimate (an estimate at or below 0 is noise)."""
        if self._grad_sq is None or self._trace is None or self._grad_sq <= 0 or self._trace <= 0:
            return None
        return self._trace / self._grad_sq


def efficiency(noise_scale: float | None, batch: float, initial_batch: float) -> float:
    """Progress per example at total batch ``batch`` relative to ``initial_batch`` (1 when ``φ`` is unknown
    and the batch is unchanged; unknown ``φ`` and a larger batch count as perfectly efficient, optimistic
    like the step-time prior, until it is measured)."""
    if noise_scale is None:
        return 1.0
    return (noise_scale + initial_batch) / (noise_scale + batch)


@dataclass
class Goodput:
    """One trial's goodput model: its step times, its noise scale, and the batch sizes it may use."""

    initial_batch: int  # the total batch the trial was tuned with (M0)
    max_per_replica_batch: int  # what fits in one replica's memory
    min_batch: int | None = None  # the smallest total batch allowed (default: initial_batch)
    max_batch: int | None = None  # the largest total batch allowed (default: no limit but memory)
    steps: StepTimeModel = field(default_factory=StepTimeModel)
    noise: GradientNoiseScale = field(default_factory=GradientNoiseScale)

    def throughput(self, replicas: int, batch: float) -> float:
        """Examples per second."""
        seconds = self.steps.seconds(replicas, batch / replicas)
        return batch / seconds if seconds > 0 else math.inf

    def best(self, replicas: int, candidates: Sequence[int] | None = None) -> tuple[float, int]:
        """The highest goodput with ``replicas`` and the total batch that gives it."""
        low = self.min_batch or self.initial_batch
        high = min(self.max_batch or math.inf, replicas * self.max_per_replica_batch)
        if high < low:
            return 0.0, low
        sizes = candidates or sorted({int(low), int(high), *(_doublings(low, high))})
        best = (0.0, int(low))
        for batch in sizes:
            if low <= batch <= high:
                value = self.throughput(replicas, batch) * efficiency(self.noise.value, batch, self.initial_batch)
                if value > best[0]:
                    best = (value, batch)
        return best

    def speedup(self, replicas: int) -> float:
        """Goodput with ``replicas`` relative to one replica (each at its best batch); perfect scaling until
        a step time has been measured."""
        if not self.steps.fitted:
            return float(replicas)
        base = self.best(1)[0]
        return self.best(replicas)[0] / base if base > 0 else float(replicas)


def _doublings(low: float, high: float) -> list[int]:
    sizes, size = [], float(low)
    while size < high:
        sizes.append(int(size))
        size *= 2
    return sizes
