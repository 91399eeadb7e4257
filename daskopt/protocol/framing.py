"""Frames on the trial channel: a 4-byte big-endian length, then a msgpack array (:mod:`.events`).

Both ends use this module: the loop's asyncio server (:mod:`daskopt.engine.channel`) and the trial's
connection (:mod:`daskopt.trial.connection`). Nothing received is ever unpickled.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import msgpack

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # an objective pickle can be large; anything above is a protocol error
READ_BUFFER_BYTES = 256 * 1024  # what one read of an event loop's connection takes at most (asyncio's own size)
_thread = threading.local()


def read_buffer() -> memoryview:
    """The calling thread's buffer for its event loop's reads (``asyncio.BufferedProtocol.get_buffer``).

    An event loop fills the buffer and hands it to the protocol in the same callback, so one buffer per
    thread serves all of its connections. A plain ``asyncio.Protocol`` gets a fresh 256 KiB ``bytes``
    from every read instead, which the allocator may serve with a memory map and unmap: 12.6 us per read
    against 1.3 us for 64 KiB on the 2-core test machine, 38 us against 8 us per round trip of an echo
    server (docs/architecture.md, "Where a read's time went, and the collector's pauses")."""
    buffer: memoryview | None = getattr(_thread, "buffer", None)
    if buffer is None:
        buffer = _thread.buffer = memoryview(bytearray(READ_BUFFER_BYTES))
    return buffer


def encode(message: list[Any]) -> bytes:
    """One frame: length header + msgpack body."""
    body = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Accumulates bytes and yields the complete messages they contain."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | memoryview) -> list[list[Any]]:
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


class ChannelClosed(ConnectionError):
    """The loop's end went away (study stopped, client process gone)."""
