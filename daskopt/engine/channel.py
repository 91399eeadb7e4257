"""The direct transport between running trials and the engine loop.

Why not ``distributed.Queue``/``Variable`` or an Actor: each of those goes through the scheduler and costs
0.6-1.2 ms per message on a 2-core box, while a plain TCP stream with ``TCP_NODELAY`` costs ~0.09 ms
(DESIGN.md, measured facts). So the loop listens on a TCP port in the client process and every trial
task opens one connection to it.

Frames are a 4-byte big-endian length followed by a msgpack array (see :mod:`daskopt.protocol.events`).
The loop side is an asyncio ``Protocol``: one ``data_received`` call may carry many frames, and they are
handed to the engine as one batch, which is how reports are batched under load without any timer.
The trial side is a non-blocking socket used by the objective's thread (plus a heartbeat thread that
only writes, under a lock), waiting in ``poll``.

Only connections that present the study's random token in their first frame are served; nothing received
is ever unpickled. On a TLS cluster the channel is mutual TLS with the cluster's own CA and certificates
(the client's certificate serves, the worker's connects), so it is as private as the cluster itself.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

from daskopt.protocol.framing import FrameDecoder, encode

LISTEN_BACKLOG = 4096


class Connection(asyncio.Protocol):
    """The loop's end of one trial task's connection.

    ``on_messages(conn, messages)`` receives each batch; ``on_closed(conn)`` fires once when the peer goes
    away (process killed, network gone, normal end). ``state`` is free for the engine to attach its
    bookkeeping to.
    """

    def __init__(
        self,
        on_messages: Callable[[Connection, list[list[Any]]], None],
        on_closed: Callable[[Connection], None],
    ) -> None:
        self._on_messages = on_messages
        self._on_closed = on_closed
        self._decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.state: Any = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except Exception:  # garbage on the port: drop the peer, never the loop
            self.close()
            return
        if messages:
            self._on_messages(self, messages)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self._on_closed(self)

    def send(self, message: list[Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(message))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


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
        conn = Connection(self._on_messages, self._closed)
        self.connections.add(conn)
        return conn

    def _closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._on_closed(conn)

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
