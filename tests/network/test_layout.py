"""Self-checks of the namespace harness: the unrouted layout really separates workers from the client, fast."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.network.layout import Layout, requires_netns

pytestmark = [requires_netns, pytest.mark.slow]

# Prints the errno (0 on success) and how long connect() took; the timeout only bounds a hang.
CONNECT = """
import json, socket, sys, time
sock = socket.socket()
sock.settimeout(10)
start = time.monotonic()
try:
    sock.connect((sys.argv[1], int(sys.argv[2])))
    print(json.dumps({"errno": 0, "seconds": time.monotonic() - start, "reply": sock.recv(100).decode()}))
except OSError as exc:
    print(json.dumps({"errno": exc.errno, "seconds": time.monotonic() - start, "error": str(exc)}))
"""

# Listens on argv[1]:argv[2], says "ready", and greets one connection.
SERVE = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
connection, _ = server.accept()
connection.sendall(b"hello")
connection.close()
"""

PORT = 9999  # any port: nothing else listens in a fresh namespace


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def connect(layout: Layout, where: str, host: str) -> dict[str, object]:
    run = layout.run_in_workers if where == "workers" else layout.run_in_client
    result = run([sys.executable, "-c", CONNECT, host, str(PORT)], timeout=30, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def unrouted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    with Layout(tmp_path_factory.mktemp("unrouted"), routed=False) as layout:
        layout.wait_for_workers()
        yield layout
    assert not any(name in namespaces() for name in layout.names)


def test_unrouted_client_computes_through_scheduler(unrouted: Layout) -> None:
    """The client reaches the scheduler and the workers reach it too, so work flows; pids match worker_pids()."""
    script = (
        "import os, sys, json\n"
        "from distributed import Client\n"
        "with Client(sys.argv[1], timeout=30) as client:\n"
        "    pids = sorted(client.run(os.getpid).values())\n"
        "    print(json.dumps({'result': client.submit(lambda: 1 + 1).result(), 'pids': pids}))\n"
    )
    args = [sys.executable, "-c", script, unrouted.scheduler_address_for_client]
    result = unrouted.run_in_client(args, timeout=60, capture_output=True, text=True)
    assert result.returncode == 0, f"{result.stderr}\n{unrouted.logs()}"
    answer = json.loads(result.stdout)
    assert answer["result"] == 2
    assert answer["pids"] == unrouted.worker_pids()
    assert len(answer["pids"]) == unrouted.n_workers


@pytest.mark.parametrize("where", ["workers", "client"])
def test_unrouted_client_and_workers_cannot_reach_each_other(unrouted: Layout, where: str) -> None:
    """No route either way, so connect() fails at once rather than after a timeout."""
    other_ip = unrouted.client_ip if where == "workers" else unrouted.workers_ip
    outcome = connect(unrouted, where, other_ip)
    assert outcome["errno"] in (errno.ENETUNREACH, errno.EHOSTUNREACH), outcome
    assert float(str(outcome["seconds"])) < 3, outcome


def test_unrouted_leaves_root_namespace_alone(unrouted: Layout) -> None:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    assert unrouted.tag not in links
    assert f" {unrouted.client_ip}/" not in addresses and f" {unrouted.workers_ip}/" not in addresses


def test_routed_workers_reach_client(tmp_path: Path) -> None:
    """With forwarding in the scheduler namespace, a server on the client "host" answers the workers "host"."""
    with Layout(tmp_path, routed=True, n_workers=1) as layout:
        serve = [sys.executable, "-c", SERVE, layout.client_ip, str(PORT)]
        with layout.popen_in_client(serve, stdout=subprocess.PIPE, text=True) as server:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            outcome = connect(layout, "workers", layout.client_ip)
            assert outcome["errno"] == 0 and outcome["reply"] == "hello", outcome
            assert server.wait(timeout=10) == 0

        layout.kill_scheduler()
        assert layout.scheduler is not None and layout.scheduler.returncode == -9
    assert not any(name in namespaces() for name in layout.names)


def test_failed_setup_deletes_namespaces(tmp_path: Path) -> None:
    """A failure half way through entering still removes what was made (the rest of the harness relies on it)."""

    class Broken(Layout):
        def _start_dask(self) -> None:
            raise RuntimeError("boom")

    layout = Broken(tmp_path, routed=True)
    with pytest.raises(RuntimeError, match="boom"), layout:
        pass
    assert not any(name in namespaces() for name in layout.names)
