"""The trial task's end of the channel to the engine loop (the loop's end is :mod:`daskopt.engine.channel`).

A non-blocking socket used by the objective's thread, plus the worker process's heartbeat thread that only
writes, under a lock, waiting in ``poll``; frames as in :mod:`daskopt.protocol.framing`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from daskopt.protocol import events
from daskopt.protocol.framing import ChannelClosed, FrameDecoder, encode

_READABLE, _WRITABLE = getattr(select, "POLLIN", 1), getattr(select, "POLLOUT", 4)  # Windows has no poll
_HEARTBEAT = encode([events.HEARTBEAT])


class LoopChannel(Protocol):
    """What a trial uses of its connection to the loop, direct (:class:`TrialConnection`) or relayed through
    the scheduler (:class:`daskopt.relay.trial_end.RelayedTrialConnection`)."""

    closed: bool

    def send(self, message: list[Any]) -> None: ...

    def heartbeat(self) -> None:
        """A sign of life, sent only if it can go at once (never waits; the connection's errors are kept)."""

    def receive(self, timeout: float | None = None) -> list[Any] | None: ...

    def close(self, linger: float = 2.0) -> None: ...


def next_message(
    ready: threading.Condition, inbox: deque[list[Any]], closed: Callable[[], bool], timeout: float | None
) -> list[Any] | None:
    """The next message of ``inbox``, which another thread fills under ``ready`` (and notifies); ``None`` when
    ``timeout`` passes first (``0`` polls), ``ChannelClosed`` once ``closed()`` and nothing is left."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with ready:
        while not inbox:
            if closed():
                raise ChannelClosed("the engine loop closed the connection")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            ready.wait(left)
        return inbox.popleft()


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
        self._setup(ssl_context.wrap_socket(sock) if ssl_context is not None else sock)  # handshake: blocking

    @classmethod
    def adopt(cls, sock: socket.socket, read_ahead: bytes = b"") -> TrialConnection:
        """A connection over a socket that is already connected (the relay's, taken from a Dask comm), with
        the bytes already read from it."""
        conn = cls.__new__(cls)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn._setup(sock)
        if read_ahead:
            conn._inbox.extend(conn._decoder.feed(read_ahead))
        return conn

    def _setup(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.setblocking(False)
        self._tls = isinstance(self._sock, ssl.SSLSocket)
        self._lock = threading.Lock()
        self._read_lock: threading.Lock | contextlib.nullcontext[None] = (
            self._lock if self._tls else contextlib.nullcontext()  # plain TCP: the kernel orders reads and writes
        )
        self._queue: deque[list[Any]] = deque()  # [frame, written] waiting for the lock's holder to write them
        self._readable = _Poller(self._sock, _READABLE)
        self._decoder = FrameDecoder()
        self._inbox: list[list[Any]] = []
        self.closed = False

    def send_frame(self, frame: bytes) -> None:
        """Bytes already framed (the relay's empty "ready" frame)."""
        self._send_combined(frame)

    def send(self, message: list[Any]) -> None:
        self._send_combined(encode(message))

    def _send_combined(self, frame: bytes) -> None:
        """Send ``frame``; returns once it is in the socket's buffer, written by this thread or another.

        Every sender queues its frame, then takes the lock; whoever holds it writes all the frames queued
        so far in one ``send``, so a thread that finds its frame written releases the lock at once. With a
        lock around each thread's own ``send``, a link's 250 trials waking together (a report and a prune
        question each) queued on that lock 500 times, and each holder, having released the GIL in ``send``,
        had to win it back before it could let the next one in (docs/architecture.md)."""
        item = [frame, False]  # [frame, written]: a list, no Python-level constructor call per frame
        self._queue.append(item)
        with self._lock:
            if not item[1]:
                self._write_queued()
        if not item[1]:
            raise ChannelClosed("the engine loop closed the connection")

    def _write_queued(self) -> None:
        """Under the lock: write every queued frame, in one ``send`` while the socket takes them."""
        items = []
        while self._queue:
            items.append(self._queue.popleft())
        if not items:
            return
        if self.closed:
            raise ChannelClosed("the engine loop closed the connection")
        data = items[0][0] if len(items) == 1 else b"".join(item[0] for item in items)
        try:
            sent = self._sock.send(data)
        except self._NOT_YET:
            sent = 0
        except OSError as exc:
            self.closed = True
            raise ChannelClosed(str(exc)) from exc
        if sent < len(data):
            self._send_rest(memoryview(data)[sent:])
        for item in items:
            item[1] = True

    def heartbeat(self) -> None:
        """A HEARTBEAT frame if the socket takes it now. Skipped when another thread is sending (that message
        says as much) or when the buffer is full (the loop is not reading it: waiting would only hold up the
        beats of the process's other connections)."""
        self.send_if_free(_HEARTBEAT)

    def send_if_free(self, frame: bytes, wait: float = 0.0) -> None:
        """Send ``frame`` if the lock is free within ``wait`` seconds and the socket has room now; else skip
        it. Errors only mark the connection closed."""
        if self.closed or not self._lock.acquire(timeout=wait if wait > 0 else -1, blocking=wait > 0):
            return
        try:
            if _Poller(self._sock, _WRITABLE).wait(0):  # room for a few bytes: the send completes at once
                self._queue.append([frame, False])
                self._write_queued()  # with whatever other threads queued meanwhile
        except (OSError, ChannelClosed):
            self.closed = True
        finally:
            self._lock.release()

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
