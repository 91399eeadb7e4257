"""Shared fixtures: a real multi-process Dask cluster per test module (never the synchronous scheduler)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from distributed import Client, LocalCluster

optuna.logging.set_verbosity(optuna.logging.WARNING)
# W&B is tested with real offline runs in tests/tracking (which sets its own mode); elsewhere it only costs time.
os.environ["WANDB_MODE"] = "disabled"


@contextlib.contextmanager
def local_client(n_workers: int, threads_per_worker: int, silence_logs: int = 40) -> Iterator[Client]:
    """A client of a private ``LocalCluster`` of worker processes, its workers all up."""
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
            silence_logs=silence_logs,
        ) as cluster,
        Client(cluster) as c,
    ):
        c.wait_for_workers(n_workers, timeout=60)
        yield c


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes with one thread each: the CI machine's two cores."""
    with local_client(2, 1) as c:
        yield c


def states(study: optuna.Study) -> dict[str, int]:
    """Trial counts by state name, e.g. ``{"COMPLETE": 8, "PRUNED": 2}``."""
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaskCommandCluster:
    """A real cluster started with the ``dask scheduler`` and ``dask worker`` commands, on loopback."""

    def __init__(self, workdir: Path, n_workers: int = 2) -> None:
        self.workdir = workdir
        self.n_workers = n_workers
        self.dask = str(Path(sys.executable).parent / "dask")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def start(self) -> DaskCommandCluster:
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.scheduler = subprocess.Popen(
            [self.dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        )
        worker = [self.dask, "worker", self.address, "--nworkers", str(self.n_workers), "--nthreads", "1"]
        self.processes += [self.scheduler, subprocess.Popen([*worker, "--no-dashboard"], cwd=self.workdir, **quiet)]
        return self

    def wait_for_workers(self, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout) as client:
            client.wait_for_workers(self.n_workers, timeout=timeout)

    def stop(self) -> None:
        """Workers first: a worker whose scheduler is already gone makes its nanny wait 8 s."""
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def __enter__(self) -> DaskCommandCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_tls_files(folder: Path) -> dict[str, str]:
    """A throwaway CA and one certificate signed by it (used for every role), made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=daskopt-test-ca",
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    return {name: str(folder / f"{name}.pem") for name in ("ca", "cert", "key")}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_tls_files(tmp_path_factory.mktemp("tls"))
