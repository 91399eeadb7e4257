"""One elastic trial's replicas on several workers: the tasks that hold them, and how their ranks meet.

A stretch of ``g`` replicas that no single worker has room for is split into *parts*, one Dask task per
worker, each holding its share of ``GPU_SLOT`` units (the loop decides the split,
:mod:`daskopt.engine.elastic`). The first part is the trial's own task: it runs the objective, and its
``launch`` starts ranks ``0 .. local - 1``, with this worker's address as ``MASTER_ADDR``. Every other part
is a :func:`run_part` task that waits for the launch, starts its own ranks (``first_rank ..``) and watches
them. Only the objective's ``launch`` call knows the function and arguments the ranks run, so it publishes
them, with the rendezvous address and what a rank needs to act as the trial, in a Dask ``Variable`` named
after the stretch (the *group*); the scheduler carries it, so this works wherever the workers reach the
scheduler, whether or not they reach the client.

Ending, whichever side ends first:

- the objective's task sets the group to *stop* when its objective returns (after ``launch``, or without
  ever launching); a part stops its ranks when it reads that;
- a rank of a part that fails (a traceback, a signal) is written to the group's *failure*, so the
  objective's ``launch`` raises the real cause and not its own ranks' "connection closed by peer";
- ranks whose peer vanished with no failure written (its worker died) fail ``launch`` with
  :class:`ReplicaLost`, which the loop handles as a lost trial: retried from its newest checkpoint;
- the loop cancels the parts when the stretch ends in its view (a lost objective task, a trial told), and
  a part whose task was cancelled or released (the client went away) stops too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any

from daskopt.integrations.scratch import scratch_folder

logger = logging.getLogger("daskopt")

POLL_S = 0.5  # how often a part and the objective's launch look at the group's state
FAILURE_WAIT_S = 2.0  # how long a failed launch waits for a part to write why its ranks failed
_PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket timeout")


class ReplicaLost(RuntimeError):
    """A replica on another worker vanished (its worker died) while the trial's ranks ran: the trial is
    lost, not failed, and the loop retries it from its newest checkpoint."""


# ------------------------------------------------------------------------------------ addresses
def worker_host() -> str:
    """This Dask worker's IP address as the scheduler knows it (``127.0.0.1`` outside a worker)."""
    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        host = get_address_host(get_worker().address)
    except (ImportError, ValueError):
        return "127.0.0.1"
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


def interface_of(ip: str) -> str | None:
    """The network interface that holds ``ip`` (``None`` when none does): what gloo and NCCL must bind to
    for peers on other hosts to reach a rank. Without it they pick the address of the host's name, which
    on many clusters (and in network namespaces) is not the address the other workers route to."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(address.family == socket.AF_INET and address.address == ip for address in addresses):
            return name
    return None


def network_env(ip: str) -> dict[str, str]:
    """``GLOO_SOCKET_IFNAME`` and ``NCCL_SOCKET_IFNAME`` for ranks on this worker, unless the user set them."""
    interface = interface_of(ip)
    if interface is None:
        return {}
    return {name: interface for name in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME") if name not in os.environ}


def group_env(world: int, local: int, first_rank: int, master: tuple[str, int], ip: str) -> list[dict[str, str]]:
    """The environment of this worker's ``local`` ranks of a ``world``-rank group that spans workers."""
    shared = {
        "MASTER_ADDR": master[0],
        "MASTER_PORT": str(master[1]),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(local),
        **network_env(ip),
    }
    if "OMP_NUM_THREADS" not in os.environ:
        shared["OMP_NUM_THREADS"] = "1"
    return [{**shared, "RANK": str(first_rank + i), "LOCAL_RANK": str(i)} for i in range(local)]


# ----------------------------------------------------------------------------------- the group
def _variable(name: str) -> Any:
    from distributed import Variable

    return Variable(name)


def _failure_name(group: str) -> str:
    return f"{group}-failure"


def _stop_name(group: str) -> str:
    return f"{group}-stop"


def variable_names(group: str) -> tuple[str, ...]:
    """The Dask variables a group may have created (the loop deletes them when its parts are done)."""
    return (group, _failure_name(group), _stop_name(group))


class Group:
    """The objective's side of a spanning stretch: publishes the launch, learns of the parts' failures."""

    def __init__(self, name: str, world: int, local: int) -> None:
        self.name, self.world, self.local = name, world, local
        self.ip = worker_host()

    def envs(self, port: int) -> list[dict[str, str]]:
        return group_env(self.world, self.local, 0, (self.ip, port), self.ip)

    def publish(self, payload: bytes, master: tuple[str, int], shared: dict[str, str]) -> None:
        """Tell the parts what to run: the pickled function and arguments, the rendezvous address, and the
        trial's facts and report pipe settings their ranks need (``shared``: environment entries)."""
        _variable(self.name).set({"payload": payload, "master": list(master), "env": shared})

    def failure(self, wait_s: float = 0.0) -> str | None:
        """What a part wrote about its ranks' failure, waiting up to ``wait_s`` for it."""
        try:
            value = _variable(_failure_name(self.name)).get(timeout=max(wait_s, 0.001))
        except (TimeoutError, OSError):
            return None
        return str(value)

    def stop(self) -> None:
        stop(self.name)


def stop(group: str) -> None:
    """Tell ``group``'s parts that the objective's side is done (idempotent, best effort)."""
    with contextlib.suppress(Exception):
        _variable(_stop_name(group)).set(True)


def lost_peer(failure: str) -> bool:
    """Whether a rank's failure is a peer that vanished (its connection dropped), not its own error."""
    first = failure.split("\n", 1)[0].lower()
    return any(mark in first for mark in _PEER_LOST)


def current(placement: Any) -> Group | None:
    """The group of an elastic stretch ``placement`` that spans workers (``None`` otherwise)."""
    if placement is None or placement.group is None:
        return None
    return Group(placement.group, placement.replicas, placement.local_replicas)


# ------------------------------------------------------------------------------- a part's task
def run_part(group: str, first_rank: int, slots: int, world: int) -> str:
    """A Dask task holding ``slots`` of an elastic trial's replicas on this worker: waits for the objective's
    ``launch``, runs ranks ``first_rank .. first_rank + slots - 1`` and watches them. Returns how it
    ended (``"finished"``, ``"stopped"``, ``"failed"``), which the loop only logs."""
    from daskopt.gpu import trial as gpu_trial

    released = _released_check()
    with gpu_trial.holding(slots) as assignment:
        spec = _await_launch(group, released)
        if spec is None:
            return "stopped"
        ip = worker_host()
        master = (str(spec["master"][0]), int(spec["master"][1]))
        envs = group_env(world, slots, first_rank, master, ip)
        gpu_env = assignment.env() if assignment is not None else {}
        return _run_ranks(group, first_rank, spec, [{**gpu_env, **env} for env in envs], released)


def _released_check() -> Any:
    """A function saying whether this task's key was cancelled or released (the loop ended the stretch, or
    the client is gone): Dask cannot interrupt a running task, so the task looks."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        worker, key = get_worker(), thread_state.key
    except (ImportError, ValueError, AttributeError):
        return lambda: False

    def released() -> bool:
        task = worker.state.tasks.get(key)
        return task is None or task.state in ("cancelled", "released", "forgotten")

    return released


def _await_launch(group: str, released: Any) -> dict[str, Any] | None:
    """The objective's launch, or ``None`` when the stretch ended first. A part can wait long: the objective's
    task may queue behind the slots of the trial's previous stretch."""
    variable, stop_variable = _variable(group), _variable(_stop_name(group))
    began = warned = time.monotonic()
    while True:
        try:
            return dict(variable.get(timeout=POLL_S))
        except TimeoutError:
            pass
        if released() or _stopped(stop_variable):
            return None
        if time.monotonic() - warned > 300:
            warned = time.monotonic()
            logger.warning(
                "daskopt: a replica part of %s has waited %.0fs for its trial's launch", group, warned - began
            )


def _run_ranks(group: str, first_rank: int, spec: dict[str, Any], envs: list[dict[str, str]], released: Any) -> str:
    from daskopt.integrations import _launch

    variable = _variable(_stop_name(group))
    with scratch_folder("part") as folder:
        (folder / "payload.pkl").write_bytes(spec["payload"])
        fifo = folder / "reports"  # ranks other than 0 send nothing; a pipe keeps report() from failing
        os.mkfifo(fifo)
        read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        shared = {**spec["env"], _launch.REPORT_ENV: str(fifo)}
        procs: list[Any] = []
        try:
            for i, env in enumerate(envs):
                procs.append(_launch.start_rank(folder, first_rank + i, {**os.environ, **env, **shared}))
            last_look = time.monotonic()
            while True:
                with contextlib.suppress(BlockingIOError):
                    os.read(read_fd, 65536)
                codes = [proc.poll() for proc in procs]
                if any(code not in (None, 0) for code in codes):
                    failure = _launch.first_failure(procs, folder, first_rank, int(envs[0]["WORLD_SIZE"]))
                    if not lost_peer(failure):  # its own error: the objective's launch raises it
                        with contextlib.suppress(Exception):
                            _variable(_failure_name(group)).set(failure)
                    return "failed"
                if all(code == 0 for code in codes):
                    return "finished"
                if time.monotonic() - last_look >= POLL_S:
                    last_look = time.monotonic()
                    if released() or _stopped(variable):
                        return "stopped"
                time.sleep(_launch.POLL_S)
        finally:
            _launch.stop_ranks(procs)
            os.close(read_fd)


def _stopped(variable: Any) -> bool:
    try:
        return bool(variable.get(timeout=0.001))
    except (TimeoutError, OSError):
        return False


def delete_groups(client: Any, groups: list[str]) -> None:
    """Delete the Dask variables of groups that have ended (best effort: the cluster may be gone)."""
    from distributed import Variable

    for group in groups:
        for name in variable_names(group):
            try:
                Variable(name, client=client).delete()
            except Exception:
                return
