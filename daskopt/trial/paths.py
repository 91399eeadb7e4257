"""Which path a trial task takes to the engine loop: the direct channel when this worker process can reach
it, else the relay through the scheduler (:mod:`daskopt.relay`).

The loop probes every worker when a call starts (:func:`probe`, run by ``client.run`` in the worker
process); a process that failed the probe, or failed to connect once, remembers the address and goes
straight to the relay afterwards, so only a worker that joins later pays one connect timeout.

A process that has reached the address before (the probe, an earlier task) does not give up on it after one
slow connect: with a thousand trials starting at once the loop accepts connections more slowly than they
arrive, and a timeout there says the loop is busy, not that the path is gone. It tries again with the
long timeout before it takes the relay.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import struct
from typing import Any

import msgpack

from daskopt.protocol import events
from daskopt.protocol.framing import encode
from daskopt.relay.trial_end import open_relay
from daskopt.trial.connection import LoopChannel, TrialConnection
from daskopt.trial.link import open_link_channel

CONNECT_TIMEOUT_S = 3.0  # to the direct channel when the relay is there to fall back on
BUSY_CONNECT_TIMEOUT_S = 30.0  # to a direct channel this process has reached before
_unreachable: dict[str, str] = {}  # direct addresses this process could not reach -> why
_reached: set[str] = set()  # direct addresses this process has connected to


def open_channel(address: str | None, route: str | None) -> LoopChannel:
    """A connection to the loop: direct if possible, else relayed. Raises ``OSError``/``ChannelClosed``."""
    if address is not None and (route is None or address not in _unreachable):
        if route is None:  # nothing to fall back on
            timeouts: tuple[float, ...] = (BUSY_CONNECT_TIMEOUT_S,)
        elif address in _reached:
            timeouts = (CONNECT_TIMEOUT_S, BUSY_CONNECT_TIMEOUT_S)
        else:
            timeouts = (CONNECT_TIMEOUT_S,)
        error: OSError | None = None
        for timeout in timeouts:
            try:
                conn = _connect(address, timeout)
            except OSError as exc:
                error = exc
                continue
            _reached.add(address)
            return conn
        assert error is not None
        if route is None:
            raise error
        _unreachable[address] = describe(error)
    if route is None:
        raise OSError("no path to the engine loop")
    return open_relay(route)


def _connect(address: str, timeout: float) -> LoopChannel:
    """A channel on this process's link to ``address``; a connection of its own with
    ``DASKOPT_CHANNEL_LINK=0`` (for comparisons: benchmarks/concurrency.py)."""
    if os.environ.get("DASKOPT_CHANNEL_LINK", "1") == "0":
        return TrialConnection(address, timeout=timeout, ssl_context=worker_tls(address))
    return open_link_channel(address, timeout, worker_tls(address))


async def probe(address: str, token: str, timeout: float, dask_worker: Any = None) -> str | None:
    """Run in each worker process by the loop (``client.run`` passes ``dask_worker``): ``None`` when the direct
    channel answers within ``timeout``, else why not (remembered, so this process's tasks use the relay
    without trying again)."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    try:
        reply = await asyncio.wait_for(_ask(host, int(port), token, worker_tls(address, dask_worker)), timeout)
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except (OSError, ValueError, msgpack.UnpackException) as exc:
        reason = describe(exc)
    else:
        if reply == [events.STOP]:
            _unreachable.pop(address, None)
            _reached.add(address)
            return None
        reason = "something else answers on that address"
    _unreachable[address] = reason
    return reason


async def _ask(host: str, port: int, token: str, context: ssl.SSLContext | None) -> Any:
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        writer.write(encode([events.PROBE, token]))
        await writer.drain()
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        if size > 1024:
            raise ValueError("an oversized answer")
        return msgpack.unpackb(await reader.readexactly(size), raw=False)
    finally:
        writer.close()


def describe(exc: BaseException) -> str:
    """``connection refused``-style text of a socket error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def worker_tls(address: str, worker: Any = None) -> ssl.SSLContext | None:
    """The worker's own TLS identity for a ``tls://`` loop address (mutual TLS, the cluster's CA)."""
    if not address.startswith("tls://"):
        return None
    if worker is None:
        from distributed import get_worker

        worker = get_worker()
    context = worker.security.get_connection_args("worker").get("ssl_context")
    return context if isinstance(context, ssl.SSLContext) else None
