"""launch_start: what starting the ranks of a multi-process trial costs, forked by the worker's zygote
against new Python processes.

Every multi-GPU trial starts its ranks once, and an elastic trial again at each resize. ``launch`` runs
``g`` ranks that join a gloo group, meet at a barrier and return: the whole call, measured in a Dask worker
(as a trial runs it), is the cost of a start. Compared in the same run, alternating: ranks forked by the
worker's zygote (torch imported once per worker), and ranks started as new Pythons with ``subprocess``
(``DASKOPT_LAUNCH_ZYGOTE=0``; what every launcher that execs a fresh interpreter pays, torchrun included).
The first zygote call, which starts the zygote, is reported apart. ``RESULT launch_start
zygote_ms=... subprocess_ms=... speedup=...``.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from benchmarks.common import Settings, dask_cluster

NAME = "launch_start"
DESCRIPTION = "starting a launched trial's gloo ranks: forked by the zygote vs new Python processes"


def _meet(rank: int) -> int:
    import torch.distributed as dist

    dist.barrier()
    return rank


def _launches(ranks: int, n: int, zygote: bool) -> list[float]:
    """In a worker: ``n`` launches of ``ranks`` gloo ranks, each timed in ms."""
    from daskopt.integrations.torch import launch

    before = os.environ.get("DASKOPT_LAUNCH_ZYGOTE")
    os.environ["DASKOPT_LAUNCH_ZYGOTE"] = "1" if zygote else "0"
    times = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            launch(_meet, ranks, timeout=120)
            times.append((time.perf_counter() - started) * 1e3)
    finally:  # the worker may be shared with other benchmarks
        if before is None:
            del os.environ["DASKOPT_LAUNCH_ZYGOTE"]
        else:
            os.environ["DASKOPT_LAUNCH_ZYGOTE"] = before
    return times


def run(settings: Settings) -> dict[str, Any]:
    ranks = settings.pick(smoke=2, quick=2, full=4)
    n = settings.pick(smoke=1, quick=3, full=5)
    repeats = settings.reps(smoke=1, quick=2, full=3)
    forked: list[float] = []
    fresh: list[float] = []
    with dask_cluster(1, 1) as client:
        first = client.submit(_launches, ranks, 1, True, pure=False).result()[0]  # starts the zygote
        for i in range(repeats):
            forked += client.submit(_launches, ranks, n, True, pure=False).result()
            fresh += client.submit(_launches, ranks, n, False, pure=False).result()
            print(
                f"  run {i + 1}/{repeats}: zygote {statistics.median(forked):.0f} ms, subprocess "
                f"{statistics.median(fresh):.0f} ms ({ranks} ranks)",
                flush=True,
            )
    return {
        "ranks": ranks,
        "zygote_ms": statistics.median(forked),
        "subprocess_ms": statistics.median(fresh),
        "speedup": statistics.median(fresh) / statistics.median(forked),
        "first_zygote_ms": first,
    }
