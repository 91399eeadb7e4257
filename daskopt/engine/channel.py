"""The direct transport between running trials and the engine loop.

Why not ``distributed.Queue``/``Variable`` or an Actor: each of those goes through the scheduler and costs
0.6-1.2 ms per message on a 2-core box, while a plain TCP stream with ``TCP_NODELAY`` costs ~0.09 ms
(DESIGN.md, measured facts). So the loop listens on a TCP port in the client process and every trial
task opens one connection to it.

Frames are a 4-byte big-endian length followed by a msgpack array (see :mod:`daskopt.engine.events`).
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
import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

_HEADER = struct.Struct(">I")
_READABLE, _WRITABLE = getattr(select, "POLLIN", 1), getattr(select, "POLLOUT", 4)  # Windows has no poll
MAX_FRAME = 256 * 1024 * 1024  # an objective pickle can be large; anything above is a protocol error


def encode(message: list[Any]) -> bytes:
    """One frame: length header + msgpack body."""
    body = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes and yields the complete messages they contain."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[Any]]:
        self._buffer += data
        messages: list[list[Any]] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 4:
            (size,) = _HEADER.unpack_from(buffer, offset)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
            end = offset + 4 + size
            if len(buffer) < end:
                break
            messages.append(msgpack.unpackb(bytes(buffer[offset + 4 : end]), raw=False))
            offset = end
        if offset:
            del buffer[:offset]
        return messages


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
        self._server = await loop.create_server(self._make_connection, self._host, 0, ssl=self._ssl)
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


class ChannelClosed(ConnectionError):
    """The loop's end went away (study stopped, client process gone)."""


class TrialConnection:
    """The trial task's end, used by the objective's thread and by a heartbeat thread that only sends.

    The socket is non-blocking; waits happen in ``poll``, and sends (and, on TLS, every read and write)
    run under one lock. Two things rule out the simpler blocking socket: a timeout is the socket's, not the
    thread's (a heartbeat's ``sendall`` while the objective polled with timeout 0 failed on a full buffer
    as if the loop were gone), and a TLS connection must never be read and written by two threads at
    once (OpenSSL's rule), while the objective may wait for a decision as long as the pruner takes.
    """

    _CHUNK = 1 << 16
    _NOT_YET = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

    def __init__(self, address: str, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        if address.startswith("tls://") and ssl_context is None:
            raise ChannelClosed("the engine loop listens with TLS, but this worker has no TLS configuration")
        host, port = address.removeprefix("tls://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = ssl_context.wrap_socket(sock) if ssl_context is not None else sock  # handshake: blocking
        self._sock.setblocking(False)
        self._tls = isinstance(self._sock, ssl.SSLSocket)
        self._lock = threading.Lock()
        self._read_lock: threading.Lock | contextlib.nullcontext[None] = (
            self._lock if self._tls else contextlib.nullcontext()  # plain TCP: the kernel orders reads and writes
        )
        self._readable = _Poller(self._sock, _READABLE)
        self._decoder = FrameDecoder()
        self._inbox: list[list[Any]] = []
        self.closed = False

    def send(self, message: list[Any]) -> None:
        frame = encode(message)
        with self._lock:
            try:
                sent = self._sock.send(frame)
            except self._NOT_YET:
                sent = 0
            except OSError as exc:
                self.closed = True
                raise ChannelClosed(str(exc)) from exc
            if sent < len(frame):
                self._send_rest(memoryview(frame)[sent:])

    def _send_rest(self, rest: memoryview) -> None:
        """The loop reads slower than we write: wait for room, under the lock, until all is sent."""
        writable = _Poller(self._sock, _WRITABLE)
        while rest:
            writable.wait(None)
            try:
                rest = rest[self._sock.send(rest) :]
            except self._NOT_YET:
                continue
            except OSError as exc:
                self.closed = True
                raise ChannelClosed(str(exc)) from exc

    def receive(self, timeout: float | None = None) -> list[Any] | None:
        """Next message; ``None`` when ``timeout`` passes first (``0`` polls without waiting)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._inbox:
            if self.closed:
                raise ChannelClosed("the engine loop closed the connection")
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            buffered = isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0  # decrypted, unread
            if not buffered and not self._readable.wait(left):
                return None
            data = self._recv()
            if data is None:  # TLS: bytes came, but not yet a whole record
                if left == 0.0:
                    return None
                continue
            if not data:
                self.closed = True
                raise ChannelClosed("the engine loop closed the connection")
            self._inbox.extend(self._decoder.feed(data))
        return self._inbox.pop(0)

    def _recv(self) -> bytes | None:
        """Bytes already there (``b""`` at end of stream), or ``None`` when a read would wait."""
        with self._read_lock:
            try:
                return self._sock.recv(self._CHUNK)
            except self._NOT_YET:
                return None
            except OSError as exc:
                self.closed = True
                raise ChannelClosed(str(exc)) from exc

    def close(self, linger: float = 2.0) -> None:
        """Close gracefully: half-close, read until the loop closes its end, then close.

        Closing a socket with unread data (a prune decision that arrived after the last report) makes the
        kernel send a reset, and a reset can discard the FINISH still unread at the loop's end.
        """
        was_closed, self.closed = self.closed, True
        try:
            if not was_closed:
                self._sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + linger
                while (left := deadline - time.monotonic()) > 0 and self._readable.wait(left):
                    if self._recv() == b"":
                        break
        except (OSError, ChannelClosed):
            pass
        finally:
            try:
                self._sock.close()
            except OSError:
                pass


class _Poller:
    """Waits for one socket to become readable or writable (``poll``; ``select`` where there is none)."""

    def __init__(self, sock: socket.socket, event: int) -> None:
        self._sock = sock
        self._event = event
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(sock, event)

    def wait(self, timeout: float | None) -> bool:
        """True once ready; False when ``timeout`` seconds (``None``: forever) pass first."""
        if self._poll is not None:
            return bool(self._poll.poll(None if timeout is None else timeout * 1000))
        readers, writers = ([self._sock], []) if self._event == _READABLE else ([], [self._sock])
        return any(select.select(readers, writers, [], timeout)[:2])


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
