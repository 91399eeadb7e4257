"""What services beside the engine loop (the dashboard) may read of a running engine.

Services run on the loop's own event loop, so they read this state between events, without locks; they
must only read, and never block (a blocked loop freezes every running trial's prune answers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import optuna
from distributed import Client

if TYPE_CHECKING:
    from daskopt.engine.config import EngineConfig
    from daskopt.engine.state import Counts, TimelineEntry


class EngineView(Protocol):
    """The read-only face of :class:`daskopt.engine.loop.Engine` that services are handed."""

    study: optuna.Study
    client: Client
    config: EngineConfig
    started_at: float  # time.time() when the call started
    counts: Counts  # outcomes of this call
    timeline: dict[int | tuple[int, int], TimelineEntry]  # where and when each trial of this call ran (a
    # trial resumed after a pause has one entry per stretch: its number, then (number, k))
