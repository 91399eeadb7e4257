"""A worker process's one link to the loop, carrying a channel per trial task (trial/link.py), against the
loop's real server (engine/channel.py), without Dask."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from daskopt.engine.channel import Channel, ChannelServer
from daskopt.protocol import events
from daskopt.protocol.framing import ChannelClosed, encode
from daskopt.trial import link
from daskopt.trial.connection import TrialConnection


@dataclass
class _Loop:
    """A channel server on its own event loop thread that echoes every message back, and records."""

    address: str = ""
    received: list[tuple[Any, list[Any]]] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)
    batches: int = 0
    writes: int = 0
    server: ChannelServer | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def call(self, fn: Any, *args: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn, *args)


@pytest.fixture
def echo_loop() -> Iterator[_Loop]:
    state = _Loop()
    ready, stop = threading.Event(), threading.Event()

    def on_messages(conn: Any, messages: list[list[Any]]) -> None:
        state.batches += 1
        for message in messages:
            state.received.append((conn, message))
            if message[0] == "engine bug":  # the engine failing on one trial's message
                raise RuntimeError("the engine failed here")
            if message[0] != events.HEARTBEAT:
                conn.send(["echo", *message])

    async def serve() -> None:
        state.loop = asyncio.get_running_loop()
        state.server = ChannelServer("127.0.0.1", on_messages, state.closed.append)
        state.address = await state.server.start()
        ready.set()
        while not stop.is_set():
            for conn in state.server.connections:  # count the writes each link makes
                if conn.transport is not None and not hasattr(conn.transport, "counted"):
                    write = conn.transport.write

                    def counted(data: bytes, write: Any = write) -> None:
                        state.writes += 1
                        write(data)

                    conn.transport.write = counted  # type: ignore[method-assign]
                    conn.transport.counted = True  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)
        await state.server.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    assert ready.wait(5)
    time.sleep(0.02)
    yield state
    stop.set()
    thread.join(5)


def _wait_for_the_write_counter(loop: _Loop) -> None:
    """The server's loop puts the write counter on each new connection every 5 ms (later on a busy machine)."""
    assert loop.server is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        transports = [conn.transport for conn in loop.server.connections]
        if transports and all(hasattr(t, "counted") for t in transports):
            return
        time.sleep(0.01)
    raise AssertionError("the write counter was never installed")


def _hello(channel: link.LinkChannel, task: int) -> None:
    channel.send([events.HELLO, "token", task, False, "w", 1])
    assert channel.receive(timeout=5) == ["echo", events.HELLO, "token", task, False, "w", 1]


def test_trials_of_one_process_share_one_connection_and_keep_their_own_conversations(echo_loop):
    channels = [link.open_link_channel(echo_loop.address, 5, None) for _ in range(5)]
    for task, channel in enumerate(channels):
        _hello(channel, task)
    for task, channel in enumerate(channels):
        channel.send([events.REPORT, task, float(task)])
    for task, channel in enumerate(channels):
        assert channel.receive(timeout=5) == ["echo", events.REPORT, task, float(task)]
        assert channel.receive(timeout=0) is None
    assert echo_loop.server is not None and len(echo_loop.server.connections) == 1
    ends = {conn for conn, _ in echo_loop.received}
    assert len(ends) == 5 and all(isinstance(end, Channel) for end in ends)  # one connection each, to the loop
    for task, end in enumerate(sorted(ends, key=lambda end: end.number)):
        assert [m for c, m in echo_loop.received if c is end][1] == [events.REPORT, task, float(task)]
    for channel in channels:
        channel.close()


def test_a_closed_channel_is_one_trial_gone_and_the_link_stays_for_the_others(echo_loop):
    first, second = (link.open_link_channel(echo_loop.address, 5, None) for _ in range(2))
    _hello(first, 1)
    _hello(second, 2)
    first.close()
    deadline = time.monotonic() + 5
    while not echo_loop.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(echo_loop.closed) == 1 and echo_loop.closed[0].number == first.id
    with pytest.raises(ChannelClosed):
        first.send([events.HEARTBEAT])
    second.send([events.REPORT, 0, 1.0])
    assert second.receive(timeout=5) == ["echo", events.REPORT, 0, 1.0]
    second.close()


def test_the_loop_closing_a_channel_ends_that_trial_only(echo_loop):
    first, second = (link.open_link_channel(echo_loop.address, 5, None) for _ in range(2))
    _hello(first, 1)
    _hello(second, 2)
    end = next(conn for conn, message in echo_loop.received if message[2] == 1)
    echo_loop.call(end.close)
    with pytest.raises(ChannelClosed):
        first.receive(timeout=5)
    second.send([events.REPORT, 3, 0.5])
    assert second.receive(timeout=5) == ["echo", events.REPORT, 3, 0.5]
    deadline = time.monotonic() + 5
    while end not in echo_loop.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert echo_loop.closed == [end]  # the loop hears it closed, as a connection's end
    second.close()


def test_heartbeats_reach_the_loop_on_their_channel(echo_loop):
    channel = link.open_link_channel(echo_loop.address, 5, None)
    _hello(channel, 7)
    channel.heartbeat()
    deadline = time.monotonic() + 5
    while [events.HEARTBEAT] not in [m for _, m in echo_loop.received] and time.monotonic() < deadline:
        time.sleep(0.01)
    (end,) = {conn for conn, message in echo_loop.received if message == [events.HEARTBEAT]}
    assert end.number == channel.id
    channel.close()


def test_the_answers_to_a_batch_from_many_trials_leave_in_one_write(echo_loop):
    channels = [link.open_link_channel(echo_loop.address, 5, None) for _ in range(40)]
    for task, channel in enumerate(channels):
        _hello(channel, task)
    _wait_for_the_write_counter(echo_loop)
    writes_before, batches_before = echo_loop.writes, echo_loop.batches
    for task, channel in enumerate(channels):
        channel.send([events.REPORT, 1, float(task)])
    for task, channel in enumerate(channels):
        assert channel.receive(timeout=5) == ["echo", events.REPORT, 1, float(task)]
    batches, writes = echo_loop.batches - batches_before, echo_loop.writes - writes_before
    assert batches == 40  # one batch per trial ...
    assert 1 <= writes < batches  # ... answered together: one write per data_received, not per trial
    for channel in channels:
        channel.close()


def test_when_the_loop_goes_every_channel_hears_it_and_the_next_task_connects_again(echo_loop):
    channels = [link.open_link_channel(echo_loop.address, 5, None) for _ in range(3)]
    for task, channel in enumerate(channels):
        _hello(channel, task)
    assert echo_loop.server is not None
    for conn in list(echo_loop.server.connections):
        echo_loop.call(conn.close)
    for channel in channels:
        with pytest.raises(ChannelClosed):
            channel.receive(timeout=5)
    assert sorted(end.number for end in echo_loop.closed) == sorted(c.id for c in channels)
    again = link.open_link_channel(echo_loop.address, 5, None)  # a new link, to the same loop
    _hello(again, 9)
    assert len(echo_loop.server.connections) == 1
    again.close()


@pytest.mark.parametrize("frame", [[1, 5], [1, []], ["one", [1]], [1, [1], 2], 7])
def test_a_link_sending_garbage_is_dropped_and_the_loop_goes_on(echo_loop, frame):
    bad = TrialConnection(echo_loop.address)
    bad.send_frame(encode([events.MUX]) + encode(frame))
    with pytest.raises(ChannelClosed):
        bad.receive(timeout=5)  # the loop closed it
    bad.close(linger=0)
    good = link.open_link_channel(echo_loop.address, 5, None)
    _hello(good, 1)  # the loop still serves
    good.close()


def test_an_engine_error_on_one_trials_message_closes_that_channel_only(echo_loop, caplog):
    """Left to asyncio, the error would close the link's socket: every trial of the worker process lost."""
    broken, *others = (link.open_link_channel(echo_loop.address, 5, None) for _ in range(3))
    for task, channel in enumerate([broken, *others]):
        _hello(channel, task)
    broken.send(["engine bug"])
    with pytest.raises(ChannelClosed):
        broken.receive(timeout=5)
    for task, channel in enumerate(others):  # the same link still carries the others both ways
        channel.send([events.REPORT, 1, float(task)])
        assert channel.receive(timeout=5) == ["echo", events.REPORT, 1, float(task)]
        channel.close()
    assert [end.number for end in echo_loop.closed][:1] == [broken.id]  # the loop heard it closed
    assert "closing that trial's channel only" in caplog.text and "the engine failed here" in caplog.text


class _CountingSocket:
    """The link's socket, counting its ``send`` calls."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.sends = 0

    def send(self, data: Any) -> int:
        self.sends += 1
        return int(self._sock.send(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_frames_sent_by_many_threads_at_once_arrive_whole_in_order_and_share_sends(echo_loop):
    """A link's trials send at once (they wake together): each frame arrives once, each trial's in its order,
    and the lock's holder writes what the others queued meanwhile (fewer sends than frames)."""
    channels = [link.open_link_channel(echo_loop.address, 5, None) for _ in range(100)]
    for task, channel in enumerate(channels):
        _hello(channel, task)
    conn = channels[0]._link._conn
    counting = conn._sock = _CountingSocket(conn._sock)
    start = threading.Barrier(len(channels))

    def reports(channel: link.LinkChannel) -> None:
        start.wait()
        for step in range(20):
            channel.send([events.REPORT, step, float(channel.id)])

    threads = [threading.Thread(target=reports, args=(channel,)) for channel in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for channel in channels:
        assert [channel.receive(timeout=10) for _ in range(20)] == [
            ["echo", events.REPORT, step, float(channel.id)] for step in range(20)
        ]
    got: dict[int, list[int]] = {}
    for end, message in echo_loop.received:
        if message[0] == events.REPORT:
            got.setdefault(end.number, []).append(message[1])
    assert got == {channel.id: list(range(20)) for channel in channels}
    assert counting.sends < 2000
    for channel in channels:
        channel.close()
