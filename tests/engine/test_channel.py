"""The wire format and both ends of the channel, without Dask."""

from __future__ import annotations

import asyncio
import threading

import pytest

from daskopt.engine.channel import ChannelServer, FrameDecoder, TrialConnection, encode


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
