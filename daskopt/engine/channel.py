"""The direct transport between running trials and the engine loop.

Why not ``distributed.Queue``/``Variable`` or an Actor: each of those goes through the scheduler and costs
0.6-1.2 ms per message on a 2-core box, while a plain TCP stream with ``TCP_NODELAY`` costs ~0.09 ms
(DESIGN.md, measured facts). So the loop listens on a TCP port in the client process, and each worker
process opens one connection to it (a *link*, :mod:`daskopt.trial.link`) that carries a channel per trial
task; a task may also open a connection of its own (``DASKOPT_CHANNEL_LINK=0``).

Frames are a 4-byte big-endian length followed by a msgpack array (see :mod:`daskopt.protocol.events`).
The loop side is an asyncio ``BufferedProtocol``: one read may carry many frames, and they are handed to
the engine as one batch, which is how reports are batched under load without any timer. Reads go into
one reused buffer (:func:`~daskopt.protocol.framing.read_buffer`) instead of the fresh 256 KiB
``bytes`` that asyncio allocates for every read of a plain ``Protocol`` (docs/architecture.md).
The trial side is a non-blocking socket written by the objectives' threads (plus a heartbeat thread that
only writes, under a lock) and read by the link's reader thread, waiting in ``poll``. A link's answers to
one batch (one read of its socket, the reports of many trials) leave in one write.

Only connections that present the study's random token in their first frame are served; nothing received
is ever unpickled. On a TLS cluster the channel is mutual TLS with the cluster's own CA and certificates
(the client's certificate serves, the worker's connects), so it is as private as the cluster itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

from daskopt.protocol import events
from daskopt.protocol.framing import FrameDecoder, encode, read_buffer

LISTEN_BACKLOG = 4096
logger = logging.getLogger("daskopt")


class Cork:
    """Holds what the loop writes while it handles a batch, and writes each connection's frames at once
    when the outermost batch ends: a send per connection instead of one per answer. Each send releases the
    GIL, and on a busy client process (a ``LocalCluster``'s scheduler shares it) getting the GIL back costs
    up to a switch interval (5 ms), so fewer sends are what keeps answers fast (docs/architecture.md)."""

    def __init__(self) -> None:
        self._depth = 0
        self._held: dict[Connection, list[bytes]] = {}

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                held, self._held = self._held, {}
                for conn, frames in held.items():
                    conn._send_now(b"".join(frames))

    def release(self, conn: Connection) -> None:
        """Write ``conn``'s held frames now (it is about to close: what it was told must reach it)."""
        frames = self._held.pop(conn, None)
        if frames:
            conn._send_now(b"".join(frames))

    def hold(self, conn: Connection, frame: bytes) -> bool:
        """Keep ``frame`` for ``conn`` if a batch is being handled; ``False``: write it now."""
        if not self._depth:
            return False
        self._held.setdefault(conn, []).append(frame)
        return True


class Connection(asyncio.BufferedProtocol):
    """The loop's end of one connection: a trial task's own, or a worker process's link carrying one
    :class:`Channel` per trial task (:mod:`daskopt.trial.link`; it starts with ``[MUX]``).

    ``on_messages(conn, messages)`` receives each batch; ``on_closed(conn)`` fires once when the peer goes
    away (process killed, network gone, normal end). ``state`` is free for the engine to attach its
    bookkeeping to. On a link, ``conn`` is the trial's :class:`Channel`, which offers the same.
    """

    def __init__(
        self,
        on_messages: Callable[[Any, list[list[Any]]], None],
        on_closed: Callable[[Any], None],
        on_lost: Callable[[Connection], None] | None = None,
        cork: Cork | None = None,
    ) -> None:
        self._on_messages = on_messages
        self._on_closed = on_closed
        self._on_lost = on_lost  # the server's bookkeeping of its connections (links included)
        self._decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.state: Any = None
        self.closed = False
        self._channels: dict[int, Channel] | None = None  # a link's open channels; None: not a link
        self._cork = cork or Cork()  # the server's, shared by its connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(read_buffer()[:nbytes])  # the decoder copies what it keeps

    def data_received(self, data: bytes | memoryview) -> None:
        try:
            messages = self._decoder.feed(data)
        except Exception:  # garbage on the port: drop the peer, never the loop
            self.close()
            return
        if messages and self._channels is None and self.state is None and messages[0] == [events.MUX]:
            self._channels = {}
            messages = messages[1:]
        if self._channels is not None:
            self._dispatch(messages)
        elif messages:
            with self._cork.held():
                _contained(self, self._on_messages, messages)

    def _dispatch(self, frames: list[list[Any]]) -> None:
        """Hand a link's frames to their channels, a batch per channel, and send what they answer in one
        write: a worker process's reports are decided together and answered together."""
        batches: dict[int, list[list[Any]]] = {}
        ended: list[int] = []
        for frame in frames:
            if not _link_frame(frame):
                self.close()  # not a link's frame: drop the peer, never the loop
                return
            number, message = frame
            if message is None:
                ended.append(number)
            else:
                batches.setdefault(number, []).append(message)
        with self._cork.held():
            for number, batch in batches.items():
                assert self._channels is not None
                channel = self._channels.get(number)
                if channel is None and batch[0][:1] == [events.HELLO]:  # else: late words on a closed channel
                    channel = self._channels[number] = Channel(self, number)
                if channel is not None and not channel.closed:
                    _contained(channel, self._on_messages, batch)
            for number in ended:
                channel = self._channels.pop(number, None) if self._channels is not None else None
                if channel is not None and not channel.closed:
                    channel.closed = True
                    _contained(channel, self._on_closed)

    def _write(self, frame: bytes) -> None:
        if not self._cork.hold(self, frame):
            self._send_now(frame)

    def _send_now(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self._on_lost is not None:
            self._on_lost(self)
        if self._channels is None:
            self._on_closed(self)
            return
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            if not channel.closed:
                channel.closed = True
                self._on_closed(channel)

    def send(self, message: list[Any]) -> None:
        self._write(encode(message))

    def close(self) -> None:
        self._cork.release(self)
        if self.transport is not None:
            self.transport.close()

    def end_channel(self, channel: Channel) -> None:
        """The loop closed ``channel``: the worker hears it, and ``on_closed`` fires soon, as for a
        connection."""
        if self._channels is not None and self._channels.pop(channel.number, None) is not None:
            self._write(encode([channel.number, None]))
            asyncio.get_running_loop().call_soon(self._on_closed, channel)


def _contained(conn: Connection | Channel, handler: Callable[..., None], *args: Any) -> None:
    """Run the engine's ``handler`` for ``conn``; if it raises, close ``conn`` alone (its trial is lost, and
    said so with the traceback). Left to asyncio, the error would close the whole socket: on a link, every
    trial of the worker process at once."""
    try:
        handler(conn, *args)
    except Exception:
        logger.exception("daskopt: the engine failed on a trial's message; closing that trial's channel only")
        conn.close()


def _link_frame(frame: Any) -> bool:
    """``[channel, message]``: a channel number, and a message (a non-empty list) or ``None``."""
    return (
        isinstance(frame, list)
        and len(frame) == 2
        and isinstance(frame[0], int)
        and (frame[1] is None or (isinstance(frame[1], list) and len(frame[1]) > 0))
    )


class Channel:
    """One trial task's channel on a worker process's link: to the engine, a connection of its own."""

    def __init__(self, link: Connection, number: int) -> None:
        self.link = link
        self.number = number
        self.state: Any = None
        self.closed = False

    def send(self, message: list[Any]) -> None:
        if not self.closed:
            self.link._write(encode([self.number, message]))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.link.end_channel(self)


class ChannelServer:
    """Listens for trial connections on ``host`` (port chosen by the OS) inside the running event loop."""

    def __init__(
        self,
        host: str,
        on_messages: Callable[[Connection, list[list[Any]]], None],
        on_closed: Callable[[Connection], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host = host
        self._ssl = ssl_context
        self._on_messages = on_messages
        self._on_closed = on_closed
        self._server: asyncio.Server | None = None
        self.connections: set[Connection] = set()
        self.cork = Cork()  # what the loop answers while it handles a batch leaves in one send per connection

    async def start(self) -> str:
        """Start listening; returns the address for trial tasks: ``host:port``, or ``tls://host:port``."""
        loop = asyncio.get_running_loop()
        # a thousand trials may connect at once: asyncio's default backlog of 100 drops their SYNs, and each
        # dropped one waits a second or more for its retransmission (the kernel caps it at somaxconn)
        self._server = await loop.create_server(
            self._make_connection, self._host, 0, ssl=self._ssl, backlog=LISTEN_BACKLOG
        )
        port = self._server.sockets[0].getsockname()[1]
        return f"{'tls://' if self._ssl else ''}{self._host}:{port}"

    def _make_connection(self) -> Connection:
        conn = Connection(self._on_messages, self._on_closed, self.connections.discard, self.cork)
        self.connections.add(conn)
        return conn

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()


def channel_tls(client: Any) -> ssl.SSLContext | None:
    """On a TLS cluster the channel is mutual TLS too, with the client's certificate serving."""
    if not str(client.scheduler.address).startswith("tls://"):
        return None
    context = client.security.get_listen_args("client").get("ssl_context")
    return context if isinstance(context, ssl.SSLContext) else None


def channel_host(client: Any, override: str | None = None) -> str:
    """The address workers reach this process on: loopback for a local scheduler, else the interface that
    routes to the scheduler."""
    if override:
        return override
    from urllib.parse import urlparse

    from distributed.utils import get_ip

    host = urlparse(client.scheduler.address).hostname or "127.0.0.1"
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return "127.0.0.1"
    return str(get_ip(host))
