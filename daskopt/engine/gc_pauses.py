"""Full garbage collections that do not grow with the study while the loop runs.

CPython's cyclic collector makes a full collection whenever the objects that survived since the last one
exceed a quarter of the long-lived ones, and a full collection walks every tracked object while holding
the GIL. The driver's heap grows with the study (every finished trial stays in the storage, and a
``LocalCluster``'s scheduler lives in the same process), so each pause is longer than the one before: with
1,000 trials at once, 75-92 ms of the loop's thread per full collection after 2,000 trials, every prune
question in flight waiting behind it; at 100,000 trials in a journal study, 356 ms (benchmarks/RESULTS.md,
hundred_k; docs/architecture.md, "Where a read's time went, and the collector's pauses").

While a study runs, the objects that survive a full collection are frozen (``gc.freeze``): the next full
collection walks only what was created since, so its pause follows the study's recent growth, not its
size (the longest at 100,000 trials: 28 ms). The one collection that walks everything runs as the study
starts, before any trial waits (22-35 ms in a process with a ``LocalCluster``); it also frees what
earlier studies left. Objects that become unreachable are still freed at once by reference counting;
only a reference cycle among frozen objects waits: when the last running study returns, the frozen
objects go back to the collector's oldest generation (``gc.unfreeze``), where the next full collection
frees such cycles.

The collector is left alone where someone else manages it: when it is disabled, or when objects were
frozen before the first study started (a pre-fork server's usual set-up).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_studies = 0  # studies running in this process with the collector managed here


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    """``gc.callbacks`` hook: after a full collection, what survived it is old; the next one skips it."""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


@contextlib.contextmanager
def short_gc_pauses() -> Iterator[bool]:
    """For one study's run: yields whether the collector is managed here (see the module's docstring)."""
    global _studies
    with _lock:
        managed = _studies > 0 or (gc.isenabled() and gc.get_freeze_count() == 0)
        if managed:
            if _studies == 0:
                gc.collect()  # the one full walk, before any trial waits; it frees what earlier runs left
                gc.freeze()
                gc.callbacks.append(_freeze_survivors)
            _studies += 1
    try:
        yield managed
    finally:
        if managed:
            with _lock:
                _studies -= 1
                if _studies == 0:
                    with contextlib.suppress(ValueError):  # removed by someone else meanwhile
                        gc.callbacks.remove(_freeze_survivors)
                    gc.unfreeze()
