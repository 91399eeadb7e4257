"""The wire format and both ends of the channel, without Dask."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from daskopt.engine.channel import ChannelServer, Connection
from daskopt.protocol.framing import ChannelClosed, FrameDecoder, encode
from daskopt.trial.connection import TrialConnection


def test_decoder_reassembles_frames_split_anywhere():
    messages = [[1, "token", 3, True, "tcp://w", 42], [2, 5, 0.5], [6, "COMPLETE", [1.0], None]]
    data = b"".join(encode(m) for m in messages)
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == messages


def test_decoder_refuses_oversized_frames():
    with pytest.raises(ValueError, match="exceeds"):
        FrameDecoder().feed(b"\xff\xff\xff\xff")


def test_round_trip_between_trial_and_server():
    received: list[list] = []
    closed = threading.Event()
    ready = threading.Event()
    address: list[str] = []

    async def serve() -> None:
        def on_messages(conn, messages):  # echo each message back
            received.extend(messages)
            for message in messages:
                conn.send(["echo", *message])

        server = ChannelServer("127.0.0.1", on_messages, lambda conn: closed.set())
        address.append(await server.start())
        ready.set()
        while not closed.is_set():
            await asyncio.sleep(0.01)
        await server.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    ready.wait(5)
    conn = TrialConnection(address[0])
    conn.send([2, 7, 0.25])
    assert conn.receive(timeout=5) == ["echo", 2, 7, 0.25]
    assert conn.receive(timeout=0) is None
    conn.close()
    thread.join(5)
    assert received == [[2, 7, 0.25]]
    assert closed.is_set()


def _security(tls_files):
    from distributed import Security

    files = {"tls_ca_file": tls_files["ca"], "tls_client_cert": tls_files["cert"], "tls_client_key": tls_files["key"]}
    return Security(**files, tls_worker_cert=tls_files["cert"], tls_worker_key=tls_files["key"])


def _echo(conn, messages):
    for message in messages:
        conn.send(["echo", *message])


def _serve_echo(ssl_context=None, on_messages=_echo):
    """A channel server on its own thread (echoing, unless told otherwise); returns (address, stop)."""
    address: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        server = ChannelServer("127.0.0.1", on_messages, lambda conn: None, ssl_context)
        address.append(await server.start())
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.01)
        await server.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(5)
    return address[0], stop


def test_what_the_loop_sends_just_before_it_closes_a_connection_arrives():
    """A worker's probe is answered and closed in the same batch: the answer, held until the batch ends,
    must leave before the close (else every probe fails and the study falls back to the relay)."""

    def answer_and_close(conn, messages):
        conn.send(["bye"])
        conn.close()

    address, stop = _serve_echo(on_messages=answer_and_close)
    try:
        conn = TrialConnection(address)
        conn.send([1])
        assert conn.receive(timeout=5) == ["bye"]
    finally:
        stop.set()


def test_the_answers_to_one_batch_leave_in_one_send(monkeypatch):
    sends: list[bytes] = []
    send_now = Connection._send_now
    monkeypatch.setattr(Connection, "_send_now", lambda self, data: (sends.append(data), send_now(self, data))[1])
    address, stop = _serve_echo()
    try:
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"".join(encode([i]) for i in range(3)))  # one segment: one read on the loop
            decoder, received = FrameDecoder(), []
            while len(received) < 3:
                received += decoder.feed(sock.recv(4096))
        assert received == [["echo", 0], ["echo", 1], ["echo", 2]]
        assert len(sends) == 1
    finally:
        stop.set()


def test_tls_channel_is_mutual_tls_with_the_cluster_certificates(tls_files):
    security = _security(tls_files)
    address, stop = _serve_echo(security.get_listen_args("client")["ssl_context"])
    try:
        assert address.startswith("tls://")
        conn = TrialConnection(address, ssl_context=security.get_connection_args("worker")["ssl_context"])
        conn.send([2, 1, 0.5])
        assert conn.receive(timeout=5) == ["echo", 2, 1, 0.5]
        assert conn.receive(timeout=0) is None
        conn.close()
    finally:
        stop.set()


def test_tls_channel_refuses_a_peer_without_a_certificate(tls_files):
    import ssl

    address, stop = _serve_echo(_security(tls_files).get_listen_args("client")["ssl_context"])
    try:
        with pytest.raises(ChannelClosed):
            TrialConnection(address)  # plain TCP to a TLS port: refused before anything is sent
        anonymous = ssl.create_default_context(cafile=tls_files["ca"])
        anonymous.check_hostname = False
        with pytest.raises((ssl.SSLError, ConnectionError, ChannelClosed)):
            conn = TrialConnection(address, ssl_context=anonymous)  # TLS, but no client certificate
            conn.send([2, 1, 0.5])
            conn.receive(timeout=5)
    finally:
        stop.set()


def test_a_heartbeat_sending_into_a_full_buffer_survives_the_objective_polling():
    """The heartbeat thread's send may meet a full socket buffer (the loop reads slowly) while the objective
    polls with timeout 0; the send must wait, not fail as if the loop were gone."""
    import socket
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def slow_reader() -> None:
        peer, _ = listener.accept()
        with peer:
            while chunk := peer.recv(1 << 16):
                received.extend(chunk)
                time.sleep(0.002)

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    conn = TrialConnection(f"127.0.0.1:{listener.getsockname()[1]}")
    frames, errors = 200, []

    def heartbeat() -> None:
        try:
            for i in range(frames):
                conn.send([5, i, "x" * 60_000])
        except ChannelClosed as exc:
            errors.append(exc)

    sender = threading.Thread(target=heartbeat)
    sender.start()
    while sender.is_alive():
        assert conn.receive(timeout=0) is None
    sender.join()
    conn.close()
    reader.join(10)
    listener.close()
    assert errors == []
    assert [m[1] for m in FrameDecoder().feed(bytes(received))] == list(range(frames))


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_one_thread_sends_while_another_waits_to_receive(tls, tls_files):
    """As in a trial: the heartbeat thread sends while the objective's thread blocks in receive."""
    security = _security(tls_files)
    server_tls = security.get_listen_args("client")["ssl_context"] if tls else None
    address, stop = _serve_echo(server_tls)
    try:
        conn = TrialConnection(
            address, ssl_context=security.get_connection_args("worker")["ssl_context"] if tls else None
        )
        count = 2000
        sender = threading.Thread(target=lambda: [conn.send([5, i]) for i in range(count)])
        sender.start()
        echoes = [conn.receive(timeout=10) for _ in range(count)]
        sender.join()
        assert echoes == [["echo", 5, i] for i in range(count)]
        assert conn.receive(timeout=0.05) is None
        conn.close()
    finally:
        stop.set()


def test_frames_larger_than_the_shared_read_buffer_arrive_whole_from_connections_at_once():
    """The loop's connections read into one buffer (``read_buffer``): frames several times its size, from
    three connections writing at the same time, each arrive whole and in order on their own connection."""
    from daskopt.protocol.framing import READ_BUFFER_BYTES

    big = "x" * (3 * READ_BUFFER_BYTES + 123)
    address, stop = _serve_echo()
    try:
        conns = [TrialConnection(address) for _ in range(3)]
        senders = [
            threading.Thread(target=lambda c=c, i=i: [c.send([i, n, big]) for n in range(3)])
            for i, c in enumerate(conns)
        ]
        for sender in senders:
            sender.start()
        for i, conn in enumerate(conns):
            for n in range(3):
                assert conn.receive(timeout=10) == ["echo", i, n, big]
        for sender in senders:
            sender.join(5)
        for conn in conns:
            conn.close()
    finally:
        stop.set()
