"""The trial task's end of the relay: a connection from the worker to its scheduler.

On plain TCP (:data:`~daskopt.relay.scheduler_plugin.RAW`) the socket is taken from the Dask comm once
it is open, and the trial uses it exactly as it would the direct channel
(:class:`daskopt.trial.connection.TrialConnection`): the objective's thread reads and writes it itself.
Otherwise (TLS, other transports) the comm stays, driven on the worker's event loop, behind the same
blocking interface (:class:`RelayedTrialConnection`). Nothing received is unpickled: the frames are
msgpack, and the comm is opened with ``deserialize=False``.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections import deque
from typing import Any

import msgpack

from daskopt.protocol import events
from daskopt.protocol.framing import ChannelClosed
from daskopt.relay import scheduler_plugin as plugin
from daskopt.trial.connection import LoopChannel, TrialConnection, next_message

MAX_UNSENT = 4096  # frames handed over but not written yet; a sender beyond it waits (as on a full socket)


def open_relay(route: str, timeout: float = 30.0) -> LoopChannel:
    """A connection to the loop of ``route`` through this worker's scheduler; ``ChannelClosed`` if none."""
    from distributed import get_worker

    worker = get_worker()
    loop: asyncio.AbstractEventLoop = worker.loop.asyncio_loop  # type: ignore[attr-defined]
    relayed = RelayedTrialConnection(loop)
    opened = asyncio.run_coroutine_threadsafe(_open(worker, route, timeout, relayed), loop)
    try:
        detached = opened.result(timeout + 5)
    except Exception as exc:
        raise ChannelClosed(f"could not open the relay through the scheduler: {exc}") from exc
    if detached is None:
        return relayed
    conn = TrialConnection.adopt(*detached)
    conn.send_frame(struct.pack(plugin.LENGTH, 0))  # ready: the scheduler may write now
    return conn


async def _open(worker: Any, route: str, timeout: float, relayed: RelayedTrialConnection) -> Any:
    """On the worker's loop: connect, and either take the socket (raw) or attach ``relayed`` to the comm."""
    from distributed.comm import connect

    comm = await connect(worker.scheduler.address, timeout=timeout, deserialize=False, **worker.connection_args)
    await comm.write({"op": plugin.TRIAL_OP, "route": route, "worker": worker.address, "raw": True, "reply": False})
    transport = await comm.read()
    if transport == plugin.RAW:
        return plugin.detach(comm)
    relayed.attach(comm)
    return None


class RelayedTrialConnection:
    """``send``, ``receive(timeout)``, ``close(linger)`` and ``closed`` over a Dask comm driven on the worker's
    event loop. Sends are handed over in batches: a thread that sends while a hand-over is pending only
    appends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._changed = threading.Condition()
        self._inbox: deque[list[Any]] = deque()
        self._outbox: list[bytes | None] = []
        self._unsent = 0
        self._handover_pending = False
        self._sender: plugin.Sender | None = None
        self.closed = False

    def attach(self, comm: Any) -> None:
        """On the worker's loop: start writing and reading ``comm``."""
        self._sender = plugin.Sender(comm, on_written=self._written)
        asyncio.ensure_future(self._read(comm))

    async def _read(self, comm: Any) -> None:
        try:
            while True:
                batch = await comm.read()
                messages = [msgpack.unpackb(frame, raw=False) for frame in batch]
                with self._changed:
                    self._inbox.extend(messages)
                    self._changed.notify_all()
        except plugin.GONE:
            pass
        finally:
            with self._changed:
                self.closed = True
                self._changed.notify_all()
            if self._sender is not None:
                self._sender.close()

    # ---------------------------------------------------------------- the objective's threads
    def send(self, message: list[Any]) -> None:
        self._hand_over(msgpack.packb(message, use_bin_type=True))

    def heartbeat(self) -> None:
        """A HEARTBEAT unless the outbox is full (then the loop hears plenty, or nothing would help)."""
        if not self.closed and self._unsent < MAX_UNSENT:
            try:
                self.send([events.HEARTBEAT])
            except ChannelClosed:
                pass

    def _hand_over(self, frame: bytes | None) -> None:
        with self._changed:
            while self._unsent >= MAX_UNSENT and not self.closed:
                self._changed.wait(1.0)
            if self.closed:
                raise ChannelClosed("the engine loop closed the connection")
            self._outbox.append(frame)
            self._unsent += 1
            wake, self._handover_pending = not self._handover_pending, True
        if wake:
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        """On the worker's event loop: pass what the threads queued to the comm's sender."""
        with self._changed:
            frames, self._outbox = self._outbox, []
            self._handover_pending = False
        if self._sender is not None:
            for frame in frames:
                self._sender.send(frame)

    def _written(self, count: int) -> None:
        with self._changed:
            self._unsent -= count
            self._changed.notify_all()

    def receive(self, timeout: float | None = None) -> list[Any] | None:
        """Next message; ``None`` when ``timeout`` passes first (``0`` polls without waiting)."""
        return next_message(self._changed, self._inbox, lambda: self.closed, timeout)

    def close(self, linger: float = 2.0) -> None:
        """Say goodbye after everything sent, and wait (at most ``linger``) for the scheduler to close its end,
        so the last frames (the trial's FINISH) are read before the connection goes."""
        try:
            self._hand_over(None)
        except ChannelClosed:
            return
        deadline = time.monotonic() + linger
        with self._changed:
            while not self.closed and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
        if not self.closed and self._sender is not None:
            self._loop.call_soon_threadsafe(self._sender.comm.abort)
