"""Multi-host Dask layouts built from Linux network namespaces, for tests that need real network boundaries.

A :class:`Layout` puts the client, the scheduler and the workers in three network namespaces, as if they were three
hosts, with the scheduler in the middle::

    client ns  10.X.1.1 <--veth--> 10.X.1.2  scheduler ns  10.X.2.2 <--veth--> 10.X.2.1  workers ns

Unrouted (``routed=False``) this is the common HPC shape: the driver reaches the scheduler on a login node, the
workers reach the scheduler on the cluster network, but the workers cannot open a connection back to the driver
(and the driver cannot reach the workers). Anything that only works on one flat network fails here, and fails
fast: without a route, ``connect()`` gets ``ENETUNREACH`` at once instead of hanging until a timeout. Routed
(``routed=True``) the scheduler namespace forwards between the two subnets, so everyone reaches everyone; tests
use it as the control that shows the unrouted failure is due to the network and nothing else.

With ``worker_hosts=k`` there are k worker namespaces ("hosts"), each with its own subnet ``10.X.(2+i).0/24``
and veth to the scheduler namespace; routed, they also reach each other through it (the shape of a trial whose
replicas span hosts).

Only network namespaces are used: every process still shares the filesystem, the process table and the Python
environment with the test, so files written into ``workdir`` (objective modules, storages, logs) are visible to all
three "hosts". Nothing is configured in the root namespace (the veths are created directly inside the
namespaces), and deleting the namespaces removes the veths with them.

Making namespaces needs root and the ``ip`` command; :func:`unavailable` says why not when it can't, and
:data:`requires_netns` skips a test then.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import pytest

DASK = Path(sys.executable).parent / "dask"
ROOT = Path(__file__).resolve().parents[2]
SCHEDULER_PORT = 8786
# Long enough for a graceful close of nannies and workers on a loaded two-core CI machine.
STOP_TIMEOUT = 20.0
# Cmdline fragments of helper processes that multiprocessing starts next to the worker processes.
_HELPER_PROCESSES = ("resource_tracker", "semaphore_tracker", "forkserver")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run one ``ip`` command, raising with its stderr (which is where ``ip`` explains itself)."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


@functools.cache
def unavailable() -> str | None:
    """Why network namespaces cannot be made here (one line), or None when they can; probed once per process."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not DASK.exists():
        return f"no `dask` command next to the interpreter ({DASK})"
    probe = f"dko{secrets.token_hex(3)}-p"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _ip("netns", "exec", probe, "true")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run a command in a network namespace: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


requires_netns = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")
"""Skip marker for tests that build a :class:`Layout`; evaluated at import, and the probe is cached."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


# Layouts not yet closed, so that the atexit safety net can close them if a test run is torn down abruptly.
_open_layouts: set[Layout] = set()


@atexit.register
def _close_open_layouts() -> None:
    for layout in list(_open_layouts):
        layout.close()


class Layout:
    """Client, scheduler and workers in three network namespaces, with a real ``dask scheduler``/``dask worker``.

    Use it as a context manager: entering creates the namespaces and veths and starts the scheduler and the
    workers (without waiting for them: call :meth:`wait_for_workers`); leaving stops everything and deletes the
    namespaces, also when entering failed half way.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        routed: bool,
        n_workers: int = 2,
        nthreads: int = 1,
        worker_hosts: int = 1,
        worker_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.routed = routed
        self.n_workers = n_workers  # per worker host
        self.nthreads = nthreads
        self.worker_hosts = worker_hosts
        self.worker_args = list(worker_args)

        # The tag makes namespace names unique across concurrent test runs. The subnets need not be unique, as
        # every address lives inside this layout's namespaces; a random X only makes logs from different layouts
        # easier to tell apart.
        self.tag = f"dko{secrets.token_hex(3)}"
        self.client_ns, self.scheduler_ns, self.workers_ns = (f"{self.tag}-{role}" for role in "csw")
        # worker host i: its namespace, its address, the scheduler's address on its veth, its subnet
        self.hosts_ns = [self.workers_ns] + [f"{self.tag}-w{i}" for i in range(1, worker_hosts)]
        self.names: tuple[str, ...] = (self.client_ns, self.scheduler_ns, *self.hosts_ns)
        x = 200 + secrets.randbelow(51)
        self.hosts_ip = [f"10.{x}.{2 + i}.1" for i in range(worker_hosts)]
        self._hosts_gateway = [f"10.{x}.{2 + i}.2" for i in range(worker_hosts)]
        self._hosts_subnet = [f"10.{x}.{2 + i}.0/24" for i in range(worker_hosts)]
        self.client_ip = f"10.{x}.1.1"
        self.scheduler_ip_for_client = f"10.{x}.1.2"
        self.scheduler_ip_for_workers = f"10.{x}.2.2"
        self.workers_ip = f"10.{x}.2.1"
        self.client_subnet = f"10.{x}.1.0/24"
        self.workers_subnet = f"10.{x}.2.0/24"
        self.scheduler_address_for_client = f"tcp://{self.scheduler_ip_for_client}:{SCHEDULER_PORT}"
        self.scheduler_address_for_workers = f"tcp://{self.scheduler_ip_for_workers}:{SCHEDULER_PORT}"

        self.scheduler_log = self.workdir / f"{self.tag}-scheduler.log"
        self.workers_log = self.workdir / f"{self.tag}-workers.log"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: subprocess.Popen[bytes] | None = None  # the first host's
        self._host_workers: list[subprocess.Popen[bytes]] = []  # every host's, the first included
        self._extra: list[subprocess.Popen[Any]] = []  # started with popen_in_*; stopped on close
        self._created: list[str] = []  # namespaces that exist and must be deleted
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> Layout:
        _open_layouts.add(self)
        try:
            self._create_network()
            self._start_dask()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _create_network(self) -> None:
        for name in self.names:
            _ip("netns", "add", name)
            self._created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        # Each veth pair is created inside one namespace with its peer placed straight into the other, so no
        # interface ever appears in the root namespace. Names: "dkoXXXXXX-cs" is 12 characters (the limit is 15).
        self._veth(self.client_ns, f"{self.tag}-cs", self.client_ip, f"{self.tag}-sc", self.scheduler_ip_for_client)
        self._veth(self.workers_ns, f"{self.tag}-ws", self.workers_ip, f"{self.tag}-sw", self.scheduler_ip_for_workers)
        for i in range(1, self.worker_hosts):
            ns, ip, gateway = self.hosts_ns[i], self.hosts_ip[i], self._hosts_gateway[i]
            self._veth(ns, f"{self.tag}-w{i}", ip, f"{self.tag}-s{i}", gateway)
        # Set forwarding explicitly either way: a new namespace may inherit the host's IPv4 settings.
        forward = "1" if self.routed else "0"
        _ip("netns", "exec", self.scheduler_ns, "sysctl", "-q", "-w", f"net.ipv4.ip_forward={forward}")
        if self.routed:
            _ip("-n", self.client_ns, "route", "add", self.workers_subnet, "via", self.scheduler_ip_for_client)
            _ip("-n", self.workers_ns, "route", "add", self.client_subnet, "via", self.scheduler_ip_for_workers)
            for i in range(1, self.worker_hosts):
                ns, gateway = self.hosts_ns[i], self._hosts_gateway[i]
                _ip("-n", self.client_ns, "route", "add", self._hosts_subnet[i], "via", self.scheduler_ip_for_client)
                _ip("-n", ns, "route", "add", self.client_subnet, "via", gateway)
                for j in range(i):  # each pair of worker hosts once, both ways
                    _ip("-n", ns, "route", "add", self._hosts_subnet[j], "via", gateway)
                    _ip("-n", self.hosts_ns[j], "route", "add", self._hosts_subnet[i], "via", self._hosts_gateway[j])

    def _veth(self, ns: str, name: str, address: str, peer: str, peer_address: str) -> None:
        """A veth pair: ``name`` with ``address`` in ``ns``, ``peer`` with ``peer_address`` in the scheduler ns."""
        _ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", self.scheduler_ns)
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", name)
        _ip("-n", self.scheduler_ns, "addr", "add", f"{peer_address}/24", "dev", peer)
        _ip("-n", ns, "link", "set", name, "up")
        _ip("-n", self.scheduler_ns, "link", "set", peer, "up")

    def _start_dask(self) -> None:
        # 0.0.0.0 makes one scheduler listener answer on both veths (--host takes a single address). Beware: with
        # no default route in its namespace the scheduler cannot guess its own IP, so it advertises itself as
        # tcp://127.0.0.1:8786 (scheduler_info()["address"]); always use the scheduler_address_for_* attributes.
        scheduler = [str(DASK), "scheduler", "--host", "0.0.0.0", "--port", str(SCHEDULER_PORT), "--no-dashboard"]
        with self.scheduler_log.open("wb") as log:
            self.scheduler = self._popen(self.scheduler_ns, scheduler, stdout=log, stderr=subprocess.STDOUT)
        for i, (ns, ip) in enumerate(zip(self.hosts_ns, self.hosts_ip, strict=True)):
            scheduler_address = f"tcp://{self._hosts_gateway[i]}:{SCHEDULER_PORT}"
            worker = [str(DASK), "worker", scheduler_address, "--nworkers", str(self.n_workers)]
            worker += ["--nthreads", str(self.nthreads), "--host", ip, "--no-dashboard", *self.worker_args]
            log_path = self.workers_log if i == 0 else self.workdir / f"{self.tag}-workers-{i}.log"
            with log_path.open("wb") as log:
                process = self._popen(ns, worker, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
            self._host_workers.append(process)
        self.workers = self._host_workers[0]

    def close(self) -> None:
        """Stop every process (workers before the scheduler), then delete the namespaces. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for process in self._extra:
                _stop(process, timeout=5)
            # Workers first: a nanny whose scheduler is already gone waits for it before closing.
            for workers in self._host_workers:
                _stop(workers, STOP_TIMEOUT)
            if self.scheduler is not None:
                _stop(self.scheduler, STOP_TIMEOUT)
        finally:
            for name in self._created:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            self._created.clear()
            _open_layouts.discard(self)

    # -- running things on the "hosts" -----------------------------------------------------------------------

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The test process's environment, so that subprocesses import the same code and see the same config.

        ``workdir`` goes first on PYTHONPATH so that modules written there import everywhere (a ``dask worker``
        does not put its working directory on ``sys.path``), then the repository (the tests' own helpers), and
        W&B is disabled unless the test chose a mode.
        """
        env = dict(os.environ)
        paths = [str(self.workdir), str(ROOT), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
        env.setdefault("WANDB_MODE", "disabled")
        env.update(extra or {})
        return env

    def _popen(self, ns: str, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``ip netns exec`` execs the command, so the Popen's pid is the command's own pid."""
        env = self.environment(kwargs.pop("env", None))
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], env=env, **kwargs)

    def popen_in_client(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``args`` on the client "host"; it is stopped on close if still running."""
        process = self._popen(self.client_ns, args, **kwargs)
        self._extra.append(process)
        return process

    def popen_in_workers(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``args`` on the workers "host"; it is stopped on close if still running."""
        process = self._popen(self.workers_ns, args, **kwargs)
        self._extra.append(process)
        return process

    def run_in_client(self, args: Sequence[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``args`` on the client "host" to completion (``subprocess.run`` keywords, e.g. ``capture_output``)."""
        env = self.environment(kwargs.pop("env", None))
        return subprocess.run(["ip", "netns", "exec", self.client_ns, *args], env=env, timeout=timeout, **kwargs)

    def run_in_workers(self, args: Sequence[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``args`` on the workers "host" to completion."""
        env = self.environment(kwargs.pop("env", None))
        return subprocess.run(["ip", "netns", "exec", self.workers_ns, *args], env=env, timeout=timeout, **kwargs)

    # -- the Dask cluster ------------------------------------------------------------------------------------

    def wait_for_workers(self, timeout: float = 60) -> None:
        """Wait until all workers registered, seen from the client "host" (which also proves it reaches them)."""
        script = (
            "import sys\n"
            "from distributed import Client\n"
            "address, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])\n"
            "with Client(address, timeout=timeout) as client:\n"
            "    client.wait_for_workers(n, timeout=timeout)\n"
        )
        total = self.n_workers * self.worker_hosts
        args = [sys.executable, "-c", script, self.scheduler_address_for_client, str(total), str(timeout)]
        try:
            result = self.run_in_client(args, timeout=timeout + 30, capture_output=True, text=True)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"workers did not register within {timeout} s\n{self.logs()}") from exc
        if result.returncode != 0:
            raise RuntimeError(f"workers did not register within {timeout} s:\n{result.stderr[-3000:]}\n{self.logs()}")

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes, i.e. the nannies' children (the ``dask worker`` command runs the nannies).

        Only direct children count, so processes that tasks start are not included, nor multiprocessing's helpers.
        """
        if self.workers is None:
            return []
        try:
            children = psutil.Process(self.workers.pid).children()
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            try:
                cmdline = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if not any(helper in cmdline for helper in _HELPER_PROCESSES):
                pids.append(child.pid)
        return sorted(pids)

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler, as when its host dies: no goodbye to clients or workers."""
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.send_signal(signal.SIGKILL)
            self.scheduler.wait()

    def logs(self) -> str:
        """The tails of the scheduler and workers logs, for assertion messages."""
        return "\n".join(
            f"--- {path.name} (tail) ---\n{_tail(path)}" for path in (self.scheduler_log, self.workers_log)
        )

    def __repr__(self) -> str:
        kind = "routed" if self.routed else "unrouted"
        return f"<Layout {self.tag} {kind} client={self.client_ip} scheduler={self.scheduler_address_for_client}>"


def _stop(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; descendants left behind (orphaned workers) are killed too."""
    if process.poll() is not None:
        return
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(descendants, timeout=timeout)
    for leftover in alive:
        try:
            leftover.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


__all__ = ["Layout", "requires_netns", "unavailable"]
