"""A worker process that reached the loop before keeps the direct channel through a slow connect."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from daskopt.trial import paths
from daskopt.trial.link import LinkChannel


@pytest.fixture
def clean_paths(monkeypatch):
    monkeypatch.setattr(paths, "_unreachable", {})
    monkeypatch.setattr(paths, "_reached", set())
    monkeypatch.setattr(paths, "CONNECT_TIMEOUT_S", 0.3)
    monkeypatch.setattr(paths, "BUSY_CONNECT_TIMEOUT_S", 5.0)


def slow_listener(accept_after: float) -> tuple[socket.socket, str, list[socket.socket]]:
    """A listener whose backlog is full until ``accept_after`` seconds pass (SYNs dropped meanwhile)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = f"127.0.0.1:{server.getsockname()[1]}"
    held = []
    for _ in range(3):  # fill the backlog; connects beyond it stay pending (their SYNs are dropped)
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(server.getsockname())
        held.append(sock)

    def accept_later() -> None:
        time.sleep(accept_after)
        for _ in range(6):
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_later, daemon=True).start()
    return server, address, held


def test_a_slow_connect_to_a_known_address_waits_instead_of_taking_the_relay(clean_paths):
    server, address, held = slow_listener(accept_after=1.0)
    paths._reached.add(address)  # the probe got through earlier
    try:
        conn = paths.open_channel(address, route="a-route-never-used")
        assert isinstance(conn, LinkChannel)  # a channel on this process's link to the loop
        assert address not in paths._unreachable
        conn.close(linger=0)
    finally:
        server.close()
        for sock in held:
            sock.close()


def test_an_address_never_reached_falls_back_after_the_short_timeout(clean_paths, monkeypatch):
    server, address, held = slow_listener(accept_after=30.0)
    relayed = object()
    monkeypatch.setattr(paths, "open_relay", lambda route: relayed)
    try:
        started = time.monotonic()
        assert paths.open_channel(address, route="r") is relayed
        assert time.monotonic() - started < 4.0
        assert address in paths._unreachable and address not in paths._reached
    finally:
        server.close()
        for sock in held:
            sock.close()
