"""One connection per worker process to the engine loop, carrying the channels of all its trials.

With a connection per trial, a worker process running 250 trials held 250 sockets to the loop, and the
loop made one ``send`` per decision to each: 40,000 sends for 1,000 trials at once, each releasing and
retaking the GIL of a process that, on a ``LocalCluster``, also runs the scheduler
(benchmarks/concurrency.py, docs/architecture.md "A thousand trials at once"). Multiplexed, the loop reads
the reports of a whole process in one ``data_received`` and answers them in one write.

On the wire a link starts with the frame ``[MUX]``; every later frame, either way, is ``[channel,
message]``, where ``message`` is ``None`` when that side closed the channel. A channel then speaks the
protocol of a connection of its own (HELLO with the study's token first, ...): the loop sees one
connection per channel (:class:`daskopt.engine.channel.Channel`).

A reader thread per link hands each message to its channel. When the link breaks (the loop went away, the
network failed), every channel on it is closed, as every connection was before.
"""

from __future__ import annotations

import itertools
import os
import ssl
import threading
from collections import deque
from typing import Any

from daskopt.protocol import events
from daskopt.protocol.framing import ChannelClosed, encode
from daskopt.trial.connection import TrialConnection, next_message

HEARTBEAT_WAIT_S = 0.05  # a beat waits this long for the link's lock (another trial's send) before it skips

_links: dict[str, Link] = {}
_links_lock = threading.Lock()


def _forget_links_after_fork() -> None:
    """A forked child shares its parent's sockets but not its reader threads: it must never write on the
    parent's links (its frames would interleave with the parent's), so it starts with none."""
    global _links_lock
    _links.clear()
    _links_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_links_after_fork)


def open_link_channel(address: str, timeout: float, ssl_context: ssl.SSLContext | None) -> LinkChannel:
    """A channel to the loop at ``address`` on this process's link, connecting it first if there is none
    (or the last one broke). Raises ``OSError``/``ChannelClosed`` as a connect does."""
    with _links_lock:  # a thousand tasks starting at once make one connect per process, not a thousand
        link = _links.get(address)
        if link is None or link.closed:
            link = _links[address] = Link(TrialConnection(address, timeout=timeout, ssl_context=ssl_context))
        return link.open_channel()


class Link:
    """A connection to the loop shared by this process's trials, and the thread that reads it."""

    def __init__(self, conn: TrialConnection) -> None:
        self._conn = conn
        self._channels: dict[int, LinkChannel] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.closed = False
        try:
            conn.send([events.MUX])
        except ChannelClosed:
            conn.close(linger=0)
            raise
        self._reader = threading.Thread(target=self._read_forever, name="daskopt-link", daemon=True)
        self._reader.start()

    def open_channel(self) -> LinkChannel:
        with self._lock:
            if self.closed:
                raise ChannelClosed("the engine loop closed the connection")
            channel = LinkChannel(self, next(self._ids))
            self._channels[channel.id] = channel
            return channel

    def send(self, channel: int, message: list[Any] | None) -> None:
        try:
            self._conn.send([channel, message])
        except ChannelClosed:
            self._broken()
            raise

    def send_if_free(self, channel: int, message: list[Any]) -> None:
        self._conn.send_if_free(encode([channel, message]), wait=HEARTBEAT_WAIT_S)
        if self._conn.closed:
            self._broken()

    def forget(self, channel: int) -> None:
        with self._lock:
            self._channels.pop(channel, None)

    def _read_forever(self) -> None:
        try:
            while True:
                message = self._conn.receive(None)
                if message is None:
                    continue
                number, body = message
                with self._lock:
                    channel = self._channels.get(number)
                if channel is not None:
                    channel.deliver(body)
        except (ChannelClosed, OSError, ValueError, TypeError):  # gone, or garbage: the link is done either way
            self._broken()

    def _broken(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            channel.deliver(None)
        self._conn.close(linger=0)


class LinkChannel:
    """One trial task's channel on its process's :class:`Link`: the :class:`LoopChannel` a task uses."""

    def __init__(self, link: Link, number: int) -> None:
        self._link = link
        self.id = number
        self._inbox: deque[list[Any]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self.closed = False

    def deliver(self, message: list[Any] | None) -> None:
        """From the reader thread: a message for this channel, or ``None`` once the loop closed it."""
        with self._ready:
            if message is None:
                self.closed = True
            else:
                self._inbox.append(message)
            self._ready.notify_all()

    def send(self, message: list[Any]) -> None:
        if self.closed:
            raise ChannelClosed("the engine loop closed the connection")
        self._link.send(self.id, message)

    def heartbeat(self) -> None:
        if not self.closed:
            self._link.send_if_free(self.id, [events.HEARTBEAT])

    def receive(self, timeout: float | None = None) -> list[Any] | None:
        """Next message; ``None`` when ``timeout`` passes first (``0`` polls without waiting)."""
        return next_message(self._ready, self._inbox, lambda: self.closed, timeout)

    def close(self, linger: float = 2.0) -> None:
        """Tell the loop this channel is done; the link stays for the process's other trials. Nothing is
        lost by closing here: the link's socket stays open, so no reset can discard what was sent."""
        was_closed, self.closed = self.closed, True
        self._link.forget(self.id)
        if not was_closed:
            try:
                self._link.send(self.id, None)
            except ChannelClosed:
                pass
