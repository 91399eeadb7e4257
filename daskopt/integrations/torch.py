"""PyTorch inside a trial: its device, seeding, reporting per epoch, and trials that span several GPUs.

``pip install 'daskopt[torch]'``; torch is imported when a helper is first called, so importing this
module costs nothing. Everything works on a CPU too (``device()`` is then ``cpu``).

.. code-block:: python

    from daskopt.integrations.torch import EpochReporter, device, seed_everything

    def objective(trial):
        seed_everything(trial.number)
        model = build(trial).to(device())            # the trial's GPU, or the CPU
        reporter = EpochReporter(trial)
        for epoch in range(20):
            accuracy = train_one_epoch(model)
            reporter.step(epoch, accuracy)           # trial.report + raise TrialPruned when told to
        return accuracy

Checkpoints for schedulers that pause, resume and clone trials (PBT, promotion ASHA):
:func:`save_checkpoint` before each report, :func:`restore_checkpoint` at the start.

Multi-GPU trials (``gpus_per_trial = g``): :func:`launch` runs a function in ``g`` processes, one per GPU
of the trial, with the environment ``torch.distributed`` expects (see :func:`distributed_env`).
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from daskopt.gpu import trial as gpu_trial

EXTRA_HINT = "pip install 'daskopt[torch]'"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(f"daskopt.integrations.torch needs PyTorch; install it with: {EXTRA_HINT}") from None
    return torch


def device() -> Any:
    """The ``torch.device`` this trial (or this rank of a launched trial) should use.

    ``cuda:<LOCAL_RANK>`` in a process started by :func:`launch` or ``torchrun``; else the trial's first
    GPU as its worker numbers it (``cuda:0`` on a dask-cuda worker, which sees its own GPU first); ``cpu``
    without CUDA. The CUDA device is also made current for the calling thread, and a process that runs a
    single trial (a launched rank, a command objective's program) applies the trial's memory cap
    (``DASKOPT_GPU_MEMORY_FRACTION``) here; trials running inside the worker got theirs from daskopt.
    """
    torch = _torch()
    if not torch.cuda.is_available():
        return torch.device("cpu")
    assignment = gpu_trial.current()
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None:
        ordinal = int(local_rank) % torch.cuda.device_count()
    elif assignment is not None:
        ordinal = assignment.ordinals[0]
    else:
        ordinal = 0
    if assignment is None and gpu_trial.FRACTION_ENV in os.environ:
        gpu_trial.cap_memory(float(os.environ[gpu_trial.FRACTION_ENV]), ordinal)
    torch.cuda.set_device(ordinal)
    return torch.device("cuda", ordinal)


def seed_everything(seed: int, *, deterministic: bool = True) -> int:
    """Seed Python's ``random``, NumPy, torch (CPU and every GPU) and ``PYTHONHASHSEED``; returns ``seed``.

    ``deterministic`` sets cuDNN to deterministic kernels without autotuning
    (``cudnn.deterministic = True``, ``cudnn.benchmark = False``); ``False`` sets the opposite (faster,
    not repeatable). ``PYTHONHASHSEED`` only affects processes started afterwards (it is read at start).

    The generators are global to the process: trials that share a process (threads of one worker) also
    share them, so their draws interleave and are repeatable only one trial per process, which is what
    ``local-cuda`` and the CPU ``local`` cluster run by default.
    """
    torch = _torch()
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    return seed


def report_and_prune(trial: optuna.trial.BaseTrial, value: float, epoch: int) -> None:
    """``trial.report(value, epoch)``, then raise ``optuna.TrialPruned`` if the study's pruner says so."""
    trial.report(float(value), epoch)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at epoch {epoch} with value {float(value):.6g}")


class EpochReporter:
    """Reports one value per epoch and stops the trial when it is pruned (or cancelled by daskopt).

    Works with any ``optuna.Trial``-like object. ``values`` holds what was reported, ``step`` is also
    usable as a callback ``on_epoch(epoch, value)``.
    """

    def __init__(self, trial: optuna.trial.BaseTrial) -> None:
        self.trial = trial
        self.values: list[float] = []

    def step(self, epoch: int, value: float) -> None:
        self.values.append(float(value))
        report_and_prune(self.trial, value, epoch)


# ------------------------------------------------------------------------------------- checkpoints
CHECKPOINT_FILE = "torch.pt"


def save_checkpoint(trial: Any, epoch: int, model: Any, optimizer: Any = None, *, every: int = 1, **extra: Any) -> bool:
    """Save ``model`` and ``optimizer`` (their ``state_dict``), the RNG states and ``extra`` (a learning-rate
    scheduler's state, counters) as the trial's checkpoint of ``epoch``: every ``every`` epochs, before that
    epoch's report, so daskopt's schedulers may pause the trial there, resume it on another worker, or
    start a better-scoring copy from it (:mod:`daskopt.schedulers`). Returns whether it saved; a plain
    ``optuna.Trial`` (no checkpoints) saves nothing."""
    if not hasattr(trial, "checkpoint") or (epoch + 1) % every:
        return False
    torch = _torch()
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "extra": extra,
    }
    with trial.checkpoint(epoch) as folder:
        torch.save(state, folder / CHECKPOINT_FILE)
    return True


def restore_checkpoint(trial: Any, model: Any, optimizer: Any = None) -> tuple[int, dict[str, Any]]:
    """Load the checkpoint the trial starts from (its own after a pause or a lost worker, a better trial's
    after a PBT exploit) into ``model`` and ``optimizer``; returns the first epoch to run and the ``extra``
    values it was saved with (``(0, {})`` from scratch, or on a plain ``optuna.Trial``). The optimizer's state
    brings back the learning rate, momentum and weight decay it was saved with: set this trial's values in
    its ``param_groups`` afterwards, or a PBT exploit's new hyperparameters are silently ignored."""
    folder = getattr(trial, "restore_dir", None)
    if folder is None:
        return 0, {}
    from daskopt.trial.checkpoints import CheckpointError

    torch = _torch()
    path = folder / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file, written above
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint has no {CHECKPOINT_FILE}: {folder} (saved with save_checkpoint?)") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint corrupt: {path}: {type(exc).__name__}: {exc}") from None
    model.load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return int(state["epoch"]) + 1, dict(state["extra"])


# ---------------------------------------------------------------------------- gradient noise scale
class NoiseScaleMeter:
    """Measures the gradient noise scale ``φ`` while a model trains with gradient accumulation, for the
    elastic allocator's statistical efficiency (:mod:`daskopt.elastic.goodput`).

    Each optimizer step accumulates ``k`` micro-batches of ``b`` examples, the loss of each divided by
    ``k`` (the usual accumulation). Call :meth:`micro_step` after each micro-batch's ``backward()`` and
    :meth:`step` before ``optimizer.step()``: the micro-batches' own gradients (``b`` examples) and their
    sum (``k·b``) are the two batch sizes the estimate needs, at no extra forward or backward pass (it
    keeps one copy of the gradients).
    """

    def __init__(self, model: Any, smoothing: float = 0.9) -> None:
        from daskopt.elastic.goodput import GradientNoiseScale

        self.model = model
        self.estimate = GradientNoiseScale(smoothing=smoothing)
        self._previous: list[Any] | None = None
        self._micro_sq: list[float] = []
        self._batch = 0

    def _grads(self) -> list[Any]:
        return [p.grad.detach().clone() for p in self.model.parameters() if p.grad is not None]

    def micro_step(self, batch: int) -> None:
        """After one micro-batch's ``backward()``: ``batch`` is its number of examples."""
        current = self._grads()
        previous = self._previous or [g.new_zeros(g.shape) for g in current]
        self._micro_sq.append(sum(float((c - p).pow(2).sum()) for c, p in zip(current, previous, strict=True)))
        self._previous = current
        self._batch = batch

    def step(self) -> float | None:
        """Before ``optimizer.step()``: records this step's estimate; returns ``φ`` so far (``None`` until
        one is usable). Needs at least two micro-batches per step."""
        k = len(self._micro_sq)
        if k >= 2 and self._previous is not None:
            total_sq = sum(float(g.pow(2).sum()) for g in self._previous)  # the mean loss's gradient, k·b
            small_sq = k * sum(self._micro_sq)  # the mean of k²·|c_i|²: each micro-gradient was scaled by 1/k
            self.estimate.observe(self._batch, small_sq, self._batch * k, total_sq)
        self._previous, self._micro_sq = None, []
        return self.estimate.value

    @property
    def value(self) -> float | None:
        return self.estimate.value


def average_gradients(model: Any, *, batch: int, noise: NoiseScaleMeter | None = None) -> float | None:
    """Data-parallel step without ``DistributedDataParallel``: all-reduce ``model``'s gradients to their
    mean over the ranks, after each rank's ``backward()`` on its ``batch`` examples; returns the gradient
    noise scale measured so far (``None`` until there is one, and always with one rank).

    The ranks' own gradients (``batch`` examples each) and their mean (``batch × world`` examples) are the
    two batch sizes the noise scale needs (as AdaptDL measures it), so ``noise`` is fed at no extra cost.
    Outside a process group it leaves the gradients as they are."""
    torch = _torch()
    import torch.distributed as dist

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return None if noise is None else noise.value
    world = dist.get_world_size()
    local_sq = torch.stack([g.detach().pow(2).sum() for g in grads]).sum().reshape(1)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    dist.all_reduce(local_sq)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    if noise is None:
        return None
    noise.estimate.observe(batch, float(local_sq) / world, batch * world, float(flat.pow(2).sum()))
    return noise.value


# ------------------------------------------------------------------------------ several GPUs per trial
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (for ``MASTER_PORT``), drawn below the kernel's ephemeral range
    where it can: a port the kernel hands out for outgoing connections (a busy gloo group opens many) could
    be taken between this check and the rank that binds it."""
    low, _ = _ephemeral_range()
    candidates = random.sample(range(10000, low), min(20, low - 10000)) if low > 10000 else []
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def distributed_env(nprocs: int | None = None, *, port: int | None = None) -> list[dict[str, str]]:
    """The environment of each of ``nprocs`` processes of one single-node ``torch.distributed`` group.

    One dict per rank: ``MASTER_ADDR`` (``127.0.0.1``), ``MASTER_PORT`` (a free port unless given),
    ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and, in a GPU trial,
    ``CUDA_VISIBLE_DEVICES`` listing the trial's GPUs (rank ``i`` uses ``cuda:i``) with its memory share.
    ``nprocs`` defaults to the trial's GPU count (1 outside a GPU trial).
    """
    assignment = gpu_trial.current()
    if nprocs is None:
        nprocs = len(assignment.devices) if assignment is not None else 1
    if nprocs < 1:
        raise ValueError(f"nprocs must be >= 1, got {nprocs}")
    if assignment is not None and nprocs > len(assignment.devices) > 1:
        raise ValueError(f"nprocs = {nprocs} but this trial holds {len(assignment.devices)} GPUs")
    shared = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port or free_port()),
        "WORLD_SIZE": str(nprocs),
        "LOCAL_WORLD_SIZE": str(nprocs),
        **(assignment.env() if assignment is not None else {}),
    }
    if "OMP_NUM_THREADS" not in os.environ:
        shared["OMP_NUM_THREADS"] = "1"  # as torchrun does: n ranks must not each take every core
    return [{**shared, "RANK": str(rank), "LOCAL_RANK": str(rank)} for rank in range(nprocs)]


def launch(
    fn: Callable[..., Any],
    nprocs: int | None = None,
    *,
    args: Sequence[Any] = (),
    trial: optuna.trial.BaseTrial | None = None,
    backend: str | None = None,
    init_process_group: bool = True,
    timeout: float | None = None,
) -> Any:
    """Run ``fn(local_rank, *args)`` in ``nprocs`` new processes forming a ``torch.distributed`` group.

    Returns rank 0's return value. Each process gets :func:`distributed_env`, makes ``cuda:<rank>``
    current when CUDA is available and, unless ``init_process_group=False``, joins the group
    (``backend``: ``nccl`` with CUDA, else ``gloo``) before calling ``fn`` and leaves it afterwards.
    ``fn`` and ``args`` travel by cloudpickle. A rank that raises or dies fails the call with its
    traceback; the other ranks are stopped.

    With ``trial``, values that ranks pass to :func:`report` are reported to the trial as they come,
    and when the trial is pruned (or cancelled) the ranks are stopped and ``optuna.TrialPruned`` raised.

    The processes are forked by this worker's zygote, which imported torch once (starting a rank costs
    milliseconds, not an interpreter and ``import torch``), or, with ``DASKOPT_LAUNCH_ZYGOTE=0`` or off
    Linux, started as new Pythons with ``subprocess``; never with ``torch.multiprocessing``: Dask worker
    processes are daemonic and Python forbids them children through ``multiprocessing``.

    In an elastic trial ``nprocs`` defaults to its stretch's replicas (the slots its task holds), and with
    ``trial`` each rank can act as the trial through :func:`launched_trial`. A stretch whose replicas
    span several workers starts ranks ``0 .. k - 1`` here, with this worker's address as ``MASTER_ADDR``,
    and the other workers' parts of the trial start the rest (:mod:`daskopt.elastic.parts`): ``fn`` gets
    its *local* rank; ``RANK`` (or ``launched_trial().rank``) is its rank in the group.
    """
    _torch()  # fail early, in the trial, with the install hint
    from daskopt.elastic import parts
    from daskopt.integrations._launch import run_ranks

    group = parts.current(gpu_trial.current_placement())
    if group is not None:  # an elastic stretch whose replicas span workers: this task runs the first ranks
        if nprocs is not None and nprocs != group.world:
            raise ValueError(
                f"launch: nprocs = {nprocs}, but this elastic trial's {group.world} replicas span workers; "
                "leave nprocs out"
            )
        return run_ranks(
            fn,
            tuple(args),
            lambda: group.envs(free_port(group.ip)),
            trial=trial,
            backend=backend,
            init=init_process_group,
            timeout=timeout,
            group=group,
        )
    return run_ranks(
        fn,
        tuple(args),
        lambda: distributed_env(nprocs),
        trial=trial,
        backend=backend,
        init=init_process_group,
        timeout=timeout,
    )


def launched_trial() -> Any:
    """In a process started by :func:`launch` with ``trial=``: the trial as this rank sees it
    (:class:`daskopt.integrations.launched.LaunchedTrial`): its parameters, ``elastic`` placement,
    checkpoints (rank 0 writes them; :func:`save_checkpoint` and :func:`restore_checkpoint` accept it), reports
    and ``profile`` for the elastic allocator."""
    from daskopt.integrations.launched import launched_trial as current

    return current()


def report(value: float, step: int) -> None:
    """In a process started by :func:`launch` with ``trial=``: report ``value`` at ``step`` to the trial.

    Usually called by rank 0 only; the trial keeps the first value of each step.
    """
    from daskopt.integrations._launch import send_report

    send_report(float(value), int(step))
