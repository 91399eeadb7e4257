"""Chooses and opens the trial channel of one call: direct when workers reach this client, else relayed
through the scheduler; one line says which and why.

The direct channel (:mod:`daskopt.engine.channel`) is the fast path, but only works where workers can open
a connection to the client. A notebook attached to a cloud cluster, an SSH tunnel or a port-forward to the
scheduler, a login node behind NAT: there the client reaches the scheduler and nothing more, and trials
must go through the scheduler (:mod:`daskopt.relay`). So at the start of a call the loop probes every
worker (``client.run``, which goes through the scheduler, so it works in every layout) with a connect to
the direct channel, a few seconds at most, and decides:

- ``channel="auto"`` (default): direct if workers reached it, else the relay. The relay is also installed
  as the fallback of workers that join later and cannot reach the client.
- ``channel="direct"``: direct only; a worker that cannot reach it is a one-line error, at once.
- ``channel="relay"``: the relay only (no port opened on the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from daskopt.arguments import CHANNELS
from daskopt.engine.channel import ChannelServer, channel_host, channel_tls
from daskopt.errors import ChannelUnreachable
from daskopt.relay.loop_end import RelayEndpoint
from daskopt.trial.paths import probe

logger = logging.getLogger("daskopt")

PROBE_TIMEOUT_S = 3.0
_FIX = (
    'set channel = "auto" (or "relay") to send trials through the scheduler: optimize(channel=...) or '
    "[cluster] channel in the study file"
)


@dataclass(frozen=True)
class ChannelChoice:
    """What trial tasks are given: the direct address to dial (``None``: none) and the relay route to fall
    back on (``None``: none); ``line`` says which path is in use and why."""

    address: str | None
    route: str | None
    line: str


class TrialChannel:
    """Owns the direct server and the relay endpoint of one call; ``open()`` chooses, ``close()`` ends both."""

    def __init__(
        self,
        client: Any,
        setting: str,
        token: str,
        on_messages: Callable[[Any, list[list[Any]]], None],
        on_closed: Callable[[Any], None],
        host: str | None = None,
    ) -> None:
        if setting not in CHANNELS:
            raise ValueError(f"channel: expected one of {', '.join(CHANNELS)}, got {setting!r}")
        self._client = client
        self._setting = setting
        self._token = token
        self.server = None
        if setting != "relay":
            self.server = ChannelServer(channel_host(client, host), on_messages, on_closed, channel_tls(client))
        self.relay = RelayEndpoint(client, on_messages, on_closed) if setting != "direct" else None
        self.choice: ChannelChoice | None = None

    async def open(self) -> ChannelChoice:
        address = await self.server.start() if self.server is not None else None
        failed: dict[str, str] = {}
        results: dict[str, str | None] = {}
        if address is not None:
            results = await self._probe(address)
            failed = {worker: why for worker, why in results.items() if why is not None}
        if self._setting == "direct":
            if failed:
                raise ChannelUnreachable(f"{_cannot_reach(address, failed, len(results))}; {_FIX}")
            self.choice = ChannelChoice(address, None, f"direct to {address} ({_reached(results)})")
            return self.choice
        assert self.relay is not None
        relay_error = await self._start_relay()
        route = None if relay_error else self.relay.route
        if self._setting == "relay":
            if relay_error:
                raise ChannelUnreachable(f'channel = "relay": {relay_error}')
            line = 'relayed through the scheduler (channel = "relay")'
        elif failed:
            why = _cannot_reach(address, failed, len(results))
            if relay_error:
                raise ChannelUnreachable(f"{why}, and {relay_error}")
            if len(failed) == len(results):
                address, line = None, f"relayed through the scheduler: {why}"
            else:
                line = f"direct to {address}, relayed through the scheduler where {why}"
        elif relay_error:
            line = f"direct to {address} ({_reached(results)}; no relay: {relay_error})"
        else:
            line = f"direct to {address} ({_reached(results)}; the relay through the scheduler as fallback)"
        self.choice = ChannelChoice(address, route, line)
        return self.choice

    async def _probe(self, address: str) -> dict[str, str | None]:
        """Each worker's answer: ``None`` if it reached the direct channel, else why not."""
        try:
            return await asyncio.to_thread(
                self._client.run, probe, address, self._token, PROBE_TIMEOUT_S, on_error="return"
            )
        except Exception as exc:  # a worker that left mid-probe: decide on the others, tasks still fall back
            logger.debug("daskopt: probing the direct channel failed: %s", exc)
            return {}

    async def _start_relay(self) -> str | None:
        """Start the relay endpoint; the reason when it cannot be set up."""
        assert self.relay is not None
        try:
            await self.relay.start()
        except Exception as exc:
            return f"the relay through the scheduler failed: {type(exc).__name__}: {exc}"
        return None

    def corked(self) -> contextlib.AbstractContextManager[None]:
        """While the loop handles queued messages: its answers leave in one send per connection."""
        return self.server.cork.held() if self.server is not None else contextlib.nullcontext()

    def unreachable(self, why: str) -> str:
        """The one-line error for a trial task that found no path to this loop (a worker that joined after
        the probe, with the relay off or broken)."""
        address = self.choice.address if self.choice else None
        fix = _FIX if self.choice is not None and self.choice.route is None else "check the relay's warning above"
        return f"a worker cannot reach this client at {address} ({why}); {fix}"

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.close()
        if self.server is not None:
            await self.server.close()


def _reached(results: dict[str, str | None]) -> str:
    if not results:
        return "no workers yet to check it"
    return f"{len(results)} of {len(results)} workers reached it"


def _cannot_reach(address: str | None, failed: dict[str, Any], total: int) -> str:
    worker, why = next(iter(failed.items()))
    if not isinstance(why, str):  # on_error="return" handed back the exception
        why = f"{type(why).__name__}: {why}"
    others = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
    return f"workers cannot reach this client at {address} ({worker}: {why}{others}; {len(failed)} of {total})"
