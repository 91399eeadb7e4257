"""The engine loop's end of the relay: one connection to the scheduler carries every trial's frames.

It hands the engine the same kind of connection objects as the direct server
(:class:`daskopt.engine.channel.Connection`): ``send``, ``close``, ``closed`` and ``state``, and the same
two callbacks, so the loop cannot tell the paths apart. Frames are decoded here with msgpack; on the comm
transport the comm is opened with ``deserialize=False``, so nothing that arrives is unpickled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import threading
from collections.abc import Callable
from typing import Any

import msgpack

from daskopt.relay import scheduler_plugin as plugin

logger = logging.getLogger("daskopt")


class RelayedConnection:
    """One trial task's connection, as seen by the loop."""

    def __init__(self, relay: RelayEndpoint, conn: int, worker: str) -> None:
        self._relay = relay
        self.conn = conn
        self.worker = worker
        self.state: Any = None
        self.closed = False

    def send(self, message: list[Any]) -> None:
        if not self.closed:
            self._relay.send(self.conn, msgpack.packb(message, use_bin_type=True))

    def close(self) -> None:
        if not self.closed:
            self._relay.send(self.conn, b"")


class RelayEndpoint:
    """Registers the relay on the scheduler and serves the trial connections that come through it."""

    def __init__(
        self,
        client: Any,
        on_messages: Callable[[Any, list[list[Any]]], None],
        on_closed: Callable[[Any], None],
    ) -> None:
        self._client = client
        self._on_messages = on_messages
        self._on_closed = on_closed
        self.route = secrets.token_hex(16)
        self.connections: dict[int, RelayedConnection] = {}
        self.transport: str | None = None  # plugin.RAW or plugin.COMM once started
        self._raw: plugin.Frames | None = None
        self._sender: plugin.Sender | None = None
        self._reader: asyncio.Future[None] | None = None
        self._closing = False
        self._lost = asyncio.Event()

    async def start(self) -> None:
        """Install the plugin (once per scheduler) and connect; raises with the reason when it cannot."""
        from distributed.comm import connect

        await asyncio.to_thread(install_plugin, self._client)
        comm = await connect(self._client.scheduler.address, deserialize=False, **self._client.connection_args)
        await comm.write({"op": plugin.LOOP_OP, "route": self.route, "raw": True, "reply": False})
        self.transport = await comm.read()
        if self.transport == plugin.RAW:
            self._raw = plugin.Frames(self._raw_frames, self._gone, wait_for_ready=False)
            await plugin.adopt(plugin.detach(comm), self._raw)
            self._raw.write(struct.pack(plugin.LENGTH, 0))  # ready: the scheduler may write now
        else:
            self._sender = plugin.Sender(comm)
            self._reader = asyncio.ensure_future(self._read(comm))

    def send(self, conn: int, body: bytes) -> None:
        """``body`` to trial connection ``conn``; an empty body closes it."""
        if self._raw is not None:
            self._raw.write(struct.pack(plugin.LENGTH, len(body) + 4) + struct.pack(plugin.CONN, conn) + body)
        elif self._sender is not None:
            self._sender.send([conn, body or None])

    def _raw_frames(self, frames: list[bytes]) -> None:
        """Frames from the scheduler; consecutive messages of one trial go to the loop as one batch."""
        batch: list[list[Any]] = []
        batch_conn = -1
        for frame in frames:
            kind, (conn,) = frame[0], struct.unpack_from(plugin.CONN, frame, 1)
            if kind == plugin.DATA and conn == batch_conn:
                batch.append(msgpack.unpackb(frame[5:], raw=False))
                continue
            self._deliver(batch_conn, batch)
            batch, batch_conn = [], -1
            if kind == plugin.DATA:
                batch, batch_conn = [msgpack.unpackb(frame[5:], raw=False)], conn
            else:
                self._dispatch(kind, conn, frame[5:])
        self._deliver(batch_conn, batch)

    def _deliver(self, conn: int, messages: list[list[Any]]) -> None:
        connection = self.connections.get(conn) if messages else None
        if connection is not None:
            self._on_messages(connection, messages)

    async def _read(self, comm: Any) -> None:
        try:
            while True:
                for kind, conn, payload in await comm.read():
                    if kind == plugin.DATA:
                        self._deliver(conn, [msgpack.unpackb(body, raw=False) for body in payload])
                    else:
                        self._dispatch(kind, conn, (payload or "").encode())
        except plugin.GONE:
            pass
        self._gone()

    def _dispatch(self, kind: int, conn: int, payload: bytes) -> None:
        if kind == plugin.OPENED:
            self.connections[conn] = RelayedConnection(self, conn, payload.decode())
        elif kind == plugin.CLOSED:
            connection = self.connections.pop(conn, None)
            if connection is not None:
                connection.closed = True
                self._on_closed(connection)

    def _gone(self) -> None:
        """The connection to the scheduler ended. Trials are not declared lost here: without the relay the
        scheduler is most likely gone too, and the watchdog ends the call with SchedulerLost (as on the
        direct path); a trial that stays silent is lost after ``heartbeat_timeout`` anyway."""
        self._lost.set()
        if not self._closing:
            logger.warning("daskopt: the trial relay through the scheduler closed")

    async def close(self) -> None:
        self._closing = True
        for connection in list(self.connections.values()):
            connection.close()
        if self._raw is not None:
            self._raw.close()
            await _wait(self._lost.wait(), 5)
        if self._sender is not None:
            self._sender.close()
            await _wait(self._sender.task, 5)
        if self._reader is not None:
            self._reader.cancel()


async def _wait(awaitable: Any, timeout: float) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        pass


_installing = threading.Lock()  # by-value registration is process-wide: one call at a time


def install_plugin(client: Any) -> None:
    """Register the relay plugin, pickled by value so the scheduler needs no daskopt (idempotent)."""
    import cloudpickle

    with _installing:
        cloudpickle.register_pickle_by_value(plugin)
        try:
            client.register_plugin(plugin.RelayPlugin())
        finally:
            cloudpickle.unregister_pickle_by_value(plugin)
