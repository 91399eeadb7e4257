"""The processes of a multi-GPU trial: started by :func:`daskopt.integrations.torch.launch`, one per rank.

Parent side (:func:`run_ranks`, in the trial's thread on the worker): writes the function and its
arguments to a temporary folder, starts each rank with its environment (forked by the worker's zygote,
:mod:`daskopt.integrations._zygote`, which has torch imported already; else as
``python -m daskopt.integrations._launch <folder> <rank>``), forwards what rank 0 sends through a FIFO in
that folder to the trial, and collects rank 0's result (or the first failure). Child side (:func:`main`):
joins the process group, runs the function, writes its result or traceback. A child dies with the
process (zygote) or thread that started it (Linux), so a worker restarted by daskopt leaves no rank
behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import optuna

from daskopt.integrations.scratch import scratch_folder

REPORT_ENV = "DASKOPT_LAUNCH_REPORTS"  # the FIFO a rank writes its messages to
TRIAL_ENV = "DASKOPT_LAUNCH_TRIAL"  # JSON: what a rank needs to act as its trial (LaunchedTrial)
POLL_S = 0.05
_GRACE_S = 5.0


# --------------------------------------------------------------------------------------- parent side
def run_ranks(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    envs: Callable[[], Sequence[dict[str, str]]],
    *,
    trial: optuna.trial.BaseTrial | None,
    backend: str | None,
    init: bool,
    timeout: float | None,
    group: Any = None,
) -> Any:
    """Run the ranks with ``envs()``; when the group could not form because its ``MASTER_PORT`` was taken
    meanwhile (another process bound it between the check and rank 0's listen), again on a new port.

    With ``group`` (:class:`daskopt.elastic.parts.Group`: an elastic stretch whose replicas span workers)
    ``envs()`` are this worker's ranks; the launch is published for the other parts, and a taken port
    loses the stretch (the parts already joined the old one): the trial is retried from its checkpoint."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            return _run_once(fn, args, envs(), trial=trial, backend=backend, init=init, timeout=timeout, group=group)
        except PortTaken as exc:
            if group is not None:
                from daskopt.elastic.parts import ReplicaLost

                raise ReplicaLost(f"the rendezvous port of the trial's replicas was taken: {exc}") from None
            if attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """Rank 0 could not listen on ``MASTER_PORT``: it was taken after it was picked."""


PORT_ATTEMPTS = 3
_PORT_TAKEN = ("EADDRINUSE", "address already in use")


def _run_once(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    envs: Sequence[dict[str, str]],
    *,
    trial: optuna.trial.BaseTrial | None,
    backend: str | None,
    init: bool,
    timeout: float | None,
    group: Any = None,
) -> Any:
    with scratch_folder("launch") as folder:
        payload = cloudpickle.dumps((fn, args, backend, init))
        (folder / "payload.pkl").write_bytes(payload)
        fifo = folder / "reports"
        os.mkfifo(fifo)
        read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        keep_fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # no end of file between the ranks' writes
        procs: list[Any] = []
        try:
            path = os.pathsep.join(p for p in sys.path if p)  # the ranks import what this process can
            facts = getattr(trial, "_launch_facts", None)
            shared = {"PYTHONPATH": path, REPORT_ENV: str(fifo)}
            if facts is not None:
                shared[TRIAL_ENV] = json.dumps(facts(), default=str)
            if group is not None:
                master = (envs[0]["MASTER_ADDR"], int(envs[0]["MASTER_PORT"]))
                group.publish(payload, master, {k: v for k, v in shared.items() if k != REPORT_ENV})
            for rank, env in enumerate(envs):
                procs.append(start_rank(folder, rank, {**os.environ, **env, **shared}))
            _wait(procs, read_fd, trial, timeout, folder, group)
        finally:
            if group is not None:
                group.stop()
            stop_ranks(procs)
            os.close(read_fd)
            os.close(keep_fd)
        return cloudpickle.loads((folder / "result-0.pkl").read_bytes())


def start_rank(folder: Path, rank: int, env: dict[str, str]) -> Any:
    """Rank ``rank``: forked by this worker's zygote (torch already imported), else a new Python."""
    from daskopt.integrations import _zygote

    forked = _zygote.spawn(folder, rank, env)
    if forked is not None:
        return forked
    command = [sys.executable, "-m", "daskopt.integrations._launch", str(folder), str(rank)]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)


def _wait(
    procs: list[Any],
    read_fd: int,
    trial: optuna.trial.BaseTrial | None,
    timeout: float | None,
    folder: Path,
    group: Any = None,
) -> None:
    world = len(procs) if group is None else group.world
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = b""
    while True:
        ready, _, _ = select.select([read_fd], [], [], POLL_S)
        if ready:
            chunk = os.read(read_fd, 65536)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _forward(line, trial)
        if any(proc.poll() not in (None, 0) for proc in procs):
            failure = first_failure(procs, folder, 0, world)
            if "init_process_group" in failure and any(mark in failure.split("\n", 1)[0] for mark in _PORT_TAKEN):
                raise PortTaken(failure)
            if group is not None:
                _raise_group_failure(group, failure)
            raise RuntimeError(failure)
        if all(proc.poll() == 0 for proc in procs):
            for line in pending.split(b"\n"):
                _forward(line, trial)
            return
        if trial is not None and trial.should_prune():
            raise optuna.TrialPruned("pruned while its ranks ran; they were stopped")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"launch: the {len(procs)} ranks did not finish within {timeout:g}s; they were stopped")


def _raise_group_failure(group: Any, failure: str) -> None:
    """This worker's ranks failed in a group that spans workers: a part's own failure is the cause when one
    was written; a peer that vanished without one was lost with its worker."""
    from daskopt.elastic.parts import FAILURE_WAIT_S, ReplicaLost, lost_peer

    remote = group.failure(FAILURE_WAIT_S if lost_peer(failure) else 0.0)
    if remote is not None:
        raise RuntimeError(remote)
    if lost_peer(failure):
        raise ReplicaLost(f"a replica on another worker was lost: {failure.split(chr(10), 1)[0]}")


def _forward(line: bytes, trial: optuna.trial.BaseTrial | None) -> None:
    """One message of rank 0, in order: a report, a completed checkpoint, a profile (elastic trials)."""
    if not line.strip() or trial is None:
        return
    message = json.loads(line)
    if "checkpoint" in message:
        checkpointed = getattr(trial, "_checkpointed", None)
        if checkpointed is not None:
            checkpointed(message["checkpoint"])
    elif "profile" in message:
        profile = getattr(trial, "profile", None)
        if profile is not None:
            seconds, options = message["profile"]
            profile(seconds, **options)
    else:
        trial.report(message["value"], message["step"])


def first_failure(procs: list[Any], folder: Path, first_rank: int = 0, world: int | None = None) -> str:
    """The rank that failed first is the cause; the others usually lost their peer in a collective. Give
    them a moment to finish failing, then pick the earliest traceback. ``procs`` are ranks ``first_rank ..``
    of ``world``."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(proc.poll() is None for proc in procs):
        time.sleep(POLL_S)
    failed = {first_rank + i: code for i, proc in enumerate(procs) if (code := proc.poll()) is not None and code != 0}
    rank = min(failed, key=lambda r: _failed_at(folder, r))
    return _failure(rank, world or len(procs), failed[rank], folder)


def _failed_at(folder: Path, rank: int) -> float:
    """When ``rank`` wrote its traceback (ranks that died without one count as last)."""
    try:
        return (folder / f"error-{rank}.txt").stat().st_mtime
    except OSError:
        return float("inf")


def _failure(rank: int, world: int, code: int, folder: Path) -> str:
    error = folder / f"error-{rank}.txt"
    if error.is_file():
        text = error.read_text()
        last = (text.strip().splitlines() or [""])[-1]
        return f"launch: rank {rank} of {world} raised {last}\n{text}"
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"launch: rank {rank} of {world} {how} before finishing"


def stop_ranks(procs: list[Any]) -> None:
    """SIGTERM every rank still running, SIGKILL after a grace period."""
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + _GRACE_S
    for proc in alive:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------- child side
def send_report(value: float, step: int) -> None:
    send({"step": step, "value": value})


_report_fd: int | None = None


def send(message: dict[str, Any]) -> None:
    """To the launching trial, through its FIFO (one line, written whole: under ``PIPE_BUF`` it is atomic)."""
    global _report_fd
    if _report_fd is None:
        path = os.environ.get(REPORT_ENV)
        if path is None:
            raise RuntimeError("report() works in processes started by daskopt.integrations.torch.launch only")
        _report_fd = os.open(path, os.O_WRONLY)
    os.write(_report_fd, (json.dumps(message) + "\n").encode())


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the thread that started this process ends (a restarted worker, say)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(folder: Path, rank: int) -> int:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 1
    error = folder / f"error-{rank}.txt"
    try:
        fn, args, backend, init = cloudpickle.loads((folder / "payload.pkl").read_bytes())
        result = _run(fn, args, backend, init, error)
    except BaseException:
        if not error.exists():
            error.write_text(traceback.format_exc())
        return 1
    if rank == 0:
        (folder / "result-0.pkl").write_bytes(cloudpickle.dumps(result))
    return 0


def _run(fn: Callable[..., Any], args: tuple[Any, ...], backend: str | None, init: bool, error: Path) -> Any:
    import torch
    import torch.distributed as dist

    from daskopt.gpu.trial import FRACTION_ENV, cap_memory

    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        ordinal = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(ordinal)
        if FRACTION_ENV in os.environ:
            cap_memory(float(os.environ[FRACTION_ENV]), ordinal)
    if init:
        dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    try:
        return fn(local_rank, *args)
    except BaseException:
        error.write_text(traceback.format_exc())  # before leaving the group, so the cause is written first
        raise
    finally:
        if init and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
