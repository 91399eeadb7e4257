"""concurrency: N trials at once on one driver, against raw Dask running the same task shape.

Each trial runs 20 steps; a step sleeps 0.5 s (the GIL is free, as during GPU work), then calls
``report`` and ``should_prune`` (timed inside the trial). A ``LocalCluster`` of 4 worker processes with
N/4 threads each runs 2N trials, so every slot runs two in a row; the ideal wall time is 20 s. The pruner
is a real ``MedianPruner`` deciding every step; every trial reports the same values, so none is pruned and
both sides do the same work.

Baseline: raw Dask, ``client.map`` of 2N tasks of the same shape (20 sleeps of 0.5 s, no reports) on the
same cluster, in the same run. Targets: 1,000 at once within 1.25x raw Dask, ``should_prune`` p50 < 5 ms
and p99 < 50 ms; 2,000 at once within 1.5x.

Prints ``RESULT concurrency n=<N> ratio_vs_dask=<x> prune_p50_ms=<a> prune_p99_ms=<b>`` for each N,
then the usual summary line. ``--quick``: N = 200, 500, 1000; full: N = 200, 500, 1000, 2000.

Each size runs twice on its cluster: first with the workers at the priority they started with
(``worker_nice=0``, the issue's layout), then with ``daskopt.lower_worker_priority`` applied to them
(``worker_nice=19``, what daskopt does to the clusters it starts itself), raw Dask measured again beside it.
The order is fixed: a worker cannot raise its priority again. ``--shared-only`` skips the second arm.

Options (run as ``python -m benchmarks.concurrency [N ...]``): ``--compare-connections``, each size also
runs with a connection per trial (``DASKOPT_CHANNEL_LINK=0``, the way before one link per worker
process); ``--dask-profiler-off``, Dask's worker profiler is off on both sides; ``--driver-core``, the
driver's process (the loop, and the ``LocalCluster``'s scheduler) runs on CPU 0 and the worker processes
on the other CPUs, as on a cluster, where the driver does not share its cores with the workers (raw Dask
is measured in the same layout; on a 2-core machine the four workers then share one core).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import dask
import optuna
from distributed import Client, LocalCluster, wait

from benchmarks.common import Settings, _quiet_worker, percentile, ratio, result_line, run_daskopt
from daskopt.attributes import FAIL_REASON
from daskopt.worker_priority import DEFAULT_WORKER_NICE, lower_worker_priority

NAME = "concurrency"
DESCRIPTION = "1,000+ trials at once: wall time vs raw Dask, should_prune p50/p99"
STEPS = 20
STEP_S = 0.5
N_WORKERS = 4
RTT_ATTR = "prune_rtts"


def stepping(trial: optuna.Trial, step_s: float = STEP_S) -> float:
    """20 steps of 0.5 s, each reported and checked; the same values in every trial (never pruned)."""
    trial.suggest_float("x", 0.0, 1.0)
    rtts = []
    for step in range(STEPS):
        time.sleep(step_s)
        trial.report(float(step), step)
        t0 = time.perf_counter()
        pruned = trial.should_prune()
        rtts.append(time.perf_counter() - t0)
        if pruned:
            raise optuna.TrialPruned()
    trial.set_user_attr(RTT_ATTR, rtts)
    return 0.0


def sleeping(_: int, step_s: float = STEP_S) -> float:
    """The raw-Dask task: the trial's shape without the optimizer."""
    for _step in range(STEPS):
        time.sleep(step_s)
    return 0.0


def raw_dask(client: Client, n_tasks: int, step_s: float = STEP_S) -> float:
    t0 = time.perf_counter()
    futures = client.map(sleeping, range(n_tasks), step_s=step_s, pure=False)
    wait(futures)
    wall = time.perf_counter() - t0
    client.cancel(futures)
    return wall


def with_daskopt(client: Client, n: int, step_s: float = STEP_S) -> dict[str, Any]:
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0),
    )
    objective = stepping if step_s == STEP_S else functools.partial(stepping, step_s=step_s)
    wall = run_daskopt(client, study, objective, n_trials=2 * n, n_concurrent=n)
    trials = study.get_trials(deepcopy=False)
    rtts_ms = [1e3 * rtt for t in trials for rtt in t.user_attrs.get(RTT_ATTR, [])]
    states = {state.name: sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    states["NEVER_ASKED"] = max(0, 2 * n - len(trials))
    return {
        "wall_s": wall,
        "prune_p50_ms": percentile(rtts_ms, 50),
        "prune_p99_ms": percentile(rtts_ms, 99),
        "complete": states["COMPLETE"],
        "lost": 2 * n - states["COMPLETE"],
        "not_complete": ",".join(f"{name}:{count}" for name, count in states.items() if count and name != "COMPLETE")
        or "none",
        "fail_reasons": sorted(
            {str(t.user_attrs.get(FAIL_REASON, "none")) for t in trials if t.state.name != "COMPLETE"}
        ),
    }


def _per_trial_connections(on: bool) -> None:
    """On a worker: each trial opens a connection of its own to the loop (the way before links), or not."""
    import os

    if on:
        os.environ["DASKOPT_CHANNEL_LINK"] = "0"
    else:
        os.environ.pop("DASKOPT_CHANNEL_LINK", None)


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus`` (threads it starts later inherit the setting)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


def _pin_worker(cpus: set[int]) -> None:
    _pin(os.getpid(), cpus)


@contextlib.contextmanager
def driver_core(client: Client) -> Iterator[None]:
    """The driver's process on CPU 0 and the workers on the rest, for this block (Linux, 2+ CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--driver-core needs at least 2 CPUs")
    client.run(_pin_worker, set(cpus[1:]))
    _pin(os.getpid(), {cpus[0]})
    try:
        yield
    finally:
        _pin(os.getpid(), set(cpus))


def one_size(
    n: int,
    step_s: float = STEP_S,
    compare_connections: bool = False,
    own_core: bool = False,
    nices: tuple[int, ...] = (0, DEFAULT_WORKER_NICE),
) -> list[dict[str, Any]]:
    """One cluster for size ``n``; an arm per worker nice value in ``nices`` (ascending: lowering is for good)."""
    arms = []
    with (
        LocalCluster(
            n_workers=N_WORKERS,
            threads_per_worker=n // N_WORKERS,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(N_WORKERS, timeout=120)
        client.run(_quiet_worker)
        with driver_core(client) if own_core else contextlib.nullcontext():
            for nice in sorted(nices):
                lower_worker_priority(client, nice)
                arms.append(_one_arm(client, n, step_s, compare_connections, own_core, nice))
    return arms


def _one_arm(
    client: Client, n: int, step_s: float, compare_connections: bool, own_core: bool, nice: int
) -> dict[str, Any]:
    dask_s = raw_dask(client, 2 * n, step_s)
    ours = with_daskopt(client, n, step_s)
    if compare_connections:  # the same study with a connection per trial instead of one per process
        client.run(_per_trial_connections, True)
        apart = with_daskopt(client, n, step_s)
        client.run(_per_trial_connections, False)
    fields = {
        "n": n,
        "dask_profiler": "on" if dask.config.get("distributed.worker.profile.enabled") else "off",
        "driver": "own_core" if own_core else "shared_cores",
        "worker_nice": nice,
        "ratio_vs_dask": ratio(ours["wall_s"], dask_s),
        "prune_p50_ms": ours["prune_p50_ms"],
        "prune_p99_ms": ours["prune_p99_ms"],
        "daskopt_s": ours["wall_s"],
        "dask_s": dask_s,
        "complete": ours["complete"],
        "lost": ours["lost"],
    }
    if ours["lost"]:  # which states they ended in, and why (the run's warnings say more)
        fields["not_complete"] = ours["not_complete"]
        print(f"# {ours['lost']} trials not COMPLETE: {ours['fail_reasons'][:3]}", flush=True)
    if compare_connections:
        fields["per_trial_connections_ratio"] = ratio(apart["wall_s"], dask_s)
        fields["per_trial_connections_p50_ms"] = apart["prune_p50_ms"]
        fields["per_trial_connections_p99_ms"] = apart["prune_p99_ms"]
        fields["per_trial_connections_lost"] = apart["lost"]
    print(result_line(NAME, fields), flush=True)
    return fields


def run(
    settings: Settings,
    sizes: list[int] | None = None,
    compare_connections: bool = False,
    own_core: bool = False,
    shared_only: bool = False,
) -> dict[str, Any]:
    """Each size as the issue measured it (the driver shares the cores with the workers), then with the
    workers below the driver (``worker_nice``), or with the driver on a core of its own (``own_core``); the
    smoke run checks both layouts at 8 at once."""
    step_s = settings.pick(smoke=0.02, quick=STEP_S, full=STEP_S)  # the smoke run only checks that it runs
    nices = (0,) if shared_only else (0, DEFAULT_WORKER_NICE)
    arms = [(n, own_core) for n in sizes] if sizes else []
    if not sizes:
        arms = settings.pick(
            smoke=[(8, False), (8, True)],
            quick=[(200, False), (500, False), (1000, False)],
            full=[(200, False), (500, False), (1000, False), (2000, False)],
        )
    summary: dict[str, Any] = {}
    for n, own in arms:
        for fields in one_size(n, step_s, compare_connections, own, nices):
            arm = f"{n}_own_core" if own else str(n)
            if fields["worker_nice"]:
                arm += f"_nice{fields['worker_nice']}"
            summary[f"ratio_{arm}"] = fields["ratio_vs_dask"]
            summary[f"p99_ms_{arm}"] = fields["prune_p99_ms"]
            summary[f"lost_{arm}"] = fields["lost"]
    return summary


if __name__ == "__main__":
    import sys

    from benchmarks.common import quiet

    quiet()
    # python -m benchmarks.concurrency [N ...] [--compare-connections]: sizes, and the same study with a
    # connection per trial (as before links) beside it
    # --shared-only: only the workers' own priority, not also below the driver (worker_nice=10)
    # --dask-profiler-off: Dask's worker profiler off on both sides (docs/architecture.md: it walks every
    # task thread's stack every 10 ms, which workers running hundreds of trials should not pay)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--dask-profiler-off" in sys.argv:
        dask.config.set({"distributed.worker.profile.enabled": False})
    run(
        Settings(mode="full"),
        [int(a) for a in args] or None,
        "--compare-connections" in sys.argv,
        "--driver-core" in sys.argv,
        "--shared-only" in sys.argv,
    )
