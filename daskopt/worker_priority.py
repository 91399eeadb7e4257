"""Trial workers below the driver in the CPU's run queue, on a machine the two share.

Why: on one box the driver's loop (every report's decision) shares the cores with the worker processes
running the trials. When the trials keep the cores busy, a decision waits in the operating system's run
queue, not in daskopt: at 1,000 trials at once on two cores the loop thread waited for a CPU 58% of the
time at a wave of trial ends and ran 18% (its own work was a sixth of its wall time). With the worker
processes at nice 10 the scheduler ran the loop first more often: ``should_prune`` p99 at 1,000 at once
25.9-77.0 ms over 35 runs (median 41.1 ms) against 95-154 ms. Nice 10 was not low enough, though: at a
wave of trial ends the loop still waited for a core as long as it ran, since ten runnable trial threads
(110 each at nice 10) outweigh its 1,024. At nice 19 (weight 15 each) p99 was under 50 ms in 4 of 4
alternated runs (36-49 ms) against 1 of 4 at nice 10 (48-70 ms). Raw Dask's time does not move with it:
the workers still get every cycle the driver leaves (docs/architecture.md, benchmarks/RESULTS.md).

A worker process's threads can lower their own priority but, without privileges, never raise it again, so
this is applied only to clusters daskopt starts on this machine (``optimize`` without a client, study files
with ``kind = "local"`` or ``"local-cuda"``) or where the user asks for it (:func:`lower_worker_priority`,
``[cluster] worker_nice``). It is a Dask worker plugin, so workers that join later get it as well.
"""

from __future__ import annotations

import logging
import os
import sys

from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

logger = logging.getLogger("daskopt")

DEFAULT_WORKER_NICE = 19
MAX_NICE = 19
PLUGIN_NAME = "daskopt-worker-priority"


def check_nice(nice: object) -> int:
    """``nice`` as an int from 0 to 19, or a one-line ``ValueError`` naming the argument."""
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= MAX_NICE:
        raise ValueError(f"nice: got {nice!r}; expected a whole number from 0 (unchanged) to {MAX_NICE}")
    return nice


def lower_this_process(nice: int) -> int:
    """Raise the nice value of every thread of this process to at least ``nice`` (a thread already lower
    stays as it is); threads started later inherit it from the thread that starts them. Returns how many
    threads were changed; 0 where the platform has no priorities (Windows)."""
    if not hasattr(os, "setpriority"):
        return 0
    if not sys.platform.startswith("linux"):  # elsewhere a process has one nice value for all its threads
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            return 1
        return 0
    changed = 0
    for tid in os.listdir("/proc/self/task"):  # Linux: each thread has its own nice value
        try:
            if os.getpriority(os.PRIO_PROCESS, int(tid)) < nice:
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)
                changed += 1
        except (ProcessLookupError, PermissionError):  # the thread ended meanwhile / not ours to change
            continue
    return changed


class WorkerPriority(WorkerPlugin):
    """Lowers the priority of each worker process it is set up on (see the module's docstring)."""

    name = PLUGIN_NAME

    def __init__(self, nice: int = DEFAULT_WORKER_NICE) -> None:
        self.nice = check_nice(nice)

    def setup(self, worker: object) -> None:
        lower_this_process(self.nice)


def lower_worker_priority(client: Client, nice: int = DEFAULT_WORKER_NICE) -> None:
    """Run the worker processes of ``client``'s cluster at nice value ``nice`` (0: leave them as they are),
    now and for workers that join later, so that a driver on the same machine decides before trials compute.

    Meant for a cluster on the driver's own machine (a ``LocalCluster`` or ``LocalCUDACluster`` of your
    own; daskopt does it for the clusters it starts). The workers keep the lower priority until they exit:
    without privileges a process cannot raise its priority again.
    """
    nice = check_nice(nice)
    if nice:
        client.register_plugin(WorkerPriority(nice), name=PLUGIN_NAME)
        logger.debug("worker processes run at nice %d", nice)
