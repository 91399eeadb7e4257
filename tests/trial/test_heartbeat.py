"""One heartbeat thread per worker process beats for all its trial connections, and never waits on one."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from daskopt.protocol import events
from daskopt.protocol.framing import FrameDecoder
from daskopt.trial import heartbeat
from daskopt.trial.connection import TrialConnection


@pytest.fixture
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def heartbeat_threads() -> int:
    return sum(thread.name == "daskopt-heartbeat" for thread in threading.enumerate())


def count_beats(peer: socket.socket, seconds: float) -> int:
    peer.settimeout(0.05)
    decoder, beats, deadline = FrameDecoder(), 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = peer.recv(65536)
        except TimeoutError:
            continue
        beats += sum(message == [events.HEARTBEAT] for message in decoder.feed(data))
    return beats


def test_one_thread_beats_for_every_connection_until_stopped(listener):
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    conns = [TrialConnection(address) for _ in range(8)]
    peers = [listener.accept()[0] for _ in conns]
    try:
        for conn in conns:
            heartbeat.start(conn, 0.05)
        assert heartbeat_threads() == 1 and heartbeat.beating() >= 8
        assert all(count_beats(peer, 0.2) >= 2 for peer in peers)
        for conn in conns:
            heartbeat.stop(conn)
        time.sleep(0.1)  # a beat already due may still go out
        for peer in peers:  # what was sent while the others were counted
            count_beats(peer, 0.06)
        time.sleep(0.2)
        assert all(count_beats(peer, 0.06) == 0 for peer in peers)
        assert heartbeat.beating() == 0 and heartbeat_threads() == 1
    finally:
        for conn in conns:
            conn.close(linger=0)
        for peer in peers:
            peer.close()


def test_a_connection_the_loop_does_not_read_never_holds_up_the_others(listener):
    """A full send buffer skips that connection's beat instead of waiting for room."""
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    stuck, live = TrialConnection(address), TrialConnection(address)
    stuck_peer, live_peer = listener.accept()[0], listener.accept()[0]
    try:
        filler = b"\0" * 65536
        while True:  # fill the unread connection's buffers to the brim
            try:
                stuck._sock.send(filler)
            except BlockingIOError:
                break
        heartbeat.start(stuck, 0.02)
        heartbeat.start(live, 0.02)
        assert count_beats(live_peer, 0.3) >= 5
    finally:
        heartbeat.stop(stuck)
        heartbeat.stop(live)
        for conn in (stuck, live):
            conn.close(linger=0)
        for peer in (stuck_peer, live_peer):
            peer.close()
