"""The worker side of GPU trials: which GPUs a trial holds, and its share of their memory.

Dask places a trial on a worker that has a free ``GPU_SLOT`` (see :mod:`daskopt.gpu`), but a Dask
resource is only a count: it does not say *which* GPU. The rule daskopt follows:

- ``gpus_per_trial = 1``: the trial uses the first GPU its worker process sees (``cuda:0``). Each worker
  is pinned to one GPU through ``CUDA_VISIBLE_DEVICES`` (dask-cuda workers, and every ``local-cuda``
  layout, are).
- ``gpus_per_trial = g > 1``: a worker offering ``GPU_SLOT = n`` owns the first ``n`` devices it sees (one
  slot per GPU); each trial takes ``g`` of them that no other trial of the process holds, and gives them
  back when it ends. Dask's resource accounting guarantees that ``g`` are free when the trial starts.

:class:`GpuObjective` wraps the user's objective to do this around each call; the assignment is readable
from inside the trial (:func:`current`), by ``daskopt.integrations.torch`` and by command objectives,
whose program gets :meth:`GpuAssignment.env` in its environment.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "GPU_SLOT"
FRACTION_ENV = "DASKOPT_GPU_MEMORY_FRACTION"  # a trial's share of its GPUs' memory, for its own processes
ALLOC_ENVS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")
ALLOC_DEFAULT = "expandable_segments:True"  # fewer fragmentation OOMs under a per-process cap


@dataclass(frozen=True)
class GpuAssignment:
    """The GPUs one running trial holds.

    ``devices`` are ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs) to give the trial's own processes;
    ``ordinals`` the same GPUs as this worker process numbers them (``cuda:<ordinal>``).
    ``memory_fraction`` is the trial's share of each of its GPUs' memory (``None``: no cap) and
    ``trials_per_process`` how many trials share this process's GPU (the cap is per process).
    """

    devices: tuple[str, ...]
    ordinals: tuple[int, ...]
    memory_fraction: float | None = None
    trials_per_process: int = 1

    @property
    def process_fraction(self) -> float | None:
        """The cap for this whole process: the trial's share times the trials that share the process."""
        if self.memory_fraction is None:
            return None
        return min(1.0, self.memory_fraction * self.trials_per_process)

    def env(self) -> dict[str, str]:
        """Environment for a process this trial starts (a command, a ``launch``ed rank): its GPUs only."""
        env = {"CUDA_VISIBLE_DEVICES": ",".join(self.devices), "DASKOPT_GPUS_PER_TRIAL": str(len(self.devices))}
        if self.memory_fraction is not None:
            env[FRACTION_ENV] = repr(self.memory_fraction)
            if not any(name in os.environ for name in ALLOC_ENVS):
                env["PYTORCH_CUDA_ALLOC_CONF"] = ALLOC_DEFAULT
        return env


_current: contextvars.ContextVar[GpuAssignment | None] = contextvars.ContextVar("daskopt_gpu", default=None)
_placement: contextvars.ContextVar[Any] = contextvars.ContextVar("daskopt_elastic", default=None)


def current() -> GpuAssignment | None:
    """The running trial's GPUs, or ``None`` outside a GPU trial (or in a process the trial started)."""
    return _current.get()


def current_placement() -> Any:
    """The running elastic trial's stretch (:class:`daskopt.elastic.placement.Placement`), or ``None``."""
    return _placement.get()


def trial_env() -> dict[str, str]:
    """Environment entries for a program the current trial starts (empty outside a GPU trial)."""
    assignment = _current.get()
    return assignment.env() if assignment is not None else {}


def visible_devices() -> list[str]:
    """This process's ``CUDA_VISIBLE_DEVICES`` entries; without the variable, ``0..n-1`` for the n GPUs."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [part.strip() for part in listed.split(",") if part.strip()]
    return [str(i) for i in range(_device_count())]


def _device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


def _worker_slots() -> tuple[float, int]:
    """This Dask worker's ``GPU_SLOT`` total and thread count; ``(0, 1)`` outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return 0.0, 1
    return float(worker.state.total_resources.get(GPU_RESOURCE, 0)), int(worker.state.nthreads)


class _Pool:
    """Which of this process's GPUs multi-GPU trials hold right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[int] = set()

    def acquire(self, count: int, owned: int) -> tuple[int, ...]:
        with self._lock:
            free = [i for i in range(owned) if i not in self._busy]
            if len(free) < count:
                raise RuntimeError(
                    f"this trial needs {count} GPUs but its worker has {len(free)} free of the {owned} it owns; "
                    f"a worker for multi-GPU trials offers {GPU_RESOURCE} = <its GPUs> and sees them in "
                    "CUDA_VISIBLE_DEVICES"
                )
            taken = tuple(free[:count])
            self._busy.update(taken)
            return taken

    def release(self, ordinals: tuple[int, ...]) -> None:
        with self._lock:
            self._busy.difference_update(ordinals)


_pool = _Pool()
_capped: dict[int, float] = {}
_cap_lock = threading.Lock()


def cap_memory(fraction: float | None, ordinal: int) -> bool:
    """``torch.cuda.set_per_process_memory_fraction(fraction, ordinal)`` once per process and device.

    Returns whether a cap is in place (``False`` without torch, without CUDA, or without a fraction).
    """
    if fraction is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available() or ordinal >= torch.cuda.device_count():
        return False
    with _cap_lock:
        if _capped.get(ordinal) != fraction:
            torch.cuda.set_per_process_memory_fraction(fraction, ordinal)
            _capped[ordinal] = fraction
    return True


class GpuObjective:
    """Wraps an objective: assigns the trial its GPUs and caps its memory share around each call.

    Picklable (Dask ships it to workers). ``starts_processes`` marks objectives that run the trial in
    programs of their own (command objectives): the cap then travels in their environment instead of
    being set in the worker process, which would create a CUDA context there for nothing.
    """

    def __init__(
        self,
        objective: Callable[[Any], Any],
        *,
        gpus_per_trial: int = 1,
        memory_fraction: float | None = None,
        starts_processes: bool = False,
    ) -> None:
        self.objective = objective
        self.gpus_per_trial = gpus_per_trial
        self.memory_fraction = memory_fraction
        self.starts_processes = starts_processes

    def __repr__(self) -> str:
        return (
            f"GpuObjective({self.objective!r}, gpus_per_trial={self.gpus_per_trial}, "
            f"memory_fraction={self.memory_fraction})"
        )

    def __call__(self, trial: Any) -> Any:
        placement = getattr(trial, "elastic", None)  # an elastic trial's stretch says how many GPUs it holds
        count = placement.local_replicas if placement is not None else self.gpus_per_trial  # on this worker
        pooled = count > 1 or placement is not None  # elastic: each slot is one GPU, even for one replica
        assignment = self._assign(count, pooled)
        token = _current.set(assignment)
        placed = _placement.set(placement)
        try:
            if not pooled and not self.starts_processes:
                if self.memory_fraction is not None and not any(name in os.environ for name in ALLOC_ENVS):
                    os.environ["PYTORCH_CUDA_ALLOC_CONF"] = ALLOC_DEFAULT  # read at the first CUDA allocation
                cap_memory(assignment.process_fraction, 0)
            return self.objective(trial)
        finally:
            _current.reset(token)
            _placement.reset(placed)
            if pooled:
                _pool.release(assignment.ordinals)
            if placement is not None and placement.group is not None:  # the parts on other workers end too
                from daskopt.elastic.parts import stop

                stop(placement.group)

    def _assign(self, count: int, pooled: bool) -> GpuAssignment:
        return acquire(count, pooled, self.memory_fraction)


@contextlib.contextmanager
def holding(count: int) -> Iterator[GpuAssignment]:
    """``count`` of this worker's GPUs, held by a task that is not a trial (a part of an elastic trial's
    replicas on another worker, :mod:`daskopt.elastic.parts`) until the block ends."""
    assignment = acquire(count, True, None)
    try:
        yield assignment
    finally:
        _pool.release(assignment.ordinals)


def acquire(count: int, pooled: bool, memory_fraction: float | None) -> GpuAssignment:
    """The GPUs a task of this worker gets: ``count`` of its own that no other task holds (``pooled``), or
    the process's GPU shared with the other trials of the process."""
    slots, threads = _worker_slots()
    # without CUDA_VISIBLE_DEVICES and without torch to count GPUs, number them from the slots
    visible = visible_devices() or [str(i) for i in range(max(int(slots), count))]
    if not pooled:
        # k trials share the process's GPU when the worker offers GPU_SLOT = k (threads packing); a
        # worker that offers no slots runs as many trials as it has threads, all on its first GPU
        sharing = max(1, min(int(slots), threads) if slots else threads)
        return GpuAssignment((visible[0],), (0,), memory_fraction, sharing)
    owned = int(slots) if slots else len(visible)
    ordinals = _pool.acquire(count, min(owned, len(visible)))
    devices = tuple(visible[i] for i in ordinals)
    return GpuAssignment(devices, ordinals, memory_fraction, 1)
