"""Baselines for the daskopt throughput benchmark.

Three reference points for "how fast can trials go":

* :func:`run_optuna_distributed` -- the existing solution, ``optuna-distributed``
  in its Dask mode, against a scheduler reached by address.
* :func:`run_plain_optuna` -- plain Optuna with thread parallelism in one
  process: the in-process floor (no IPC at all).
* :func:`run_raw_dask` -- bare ``client.submit`` of a no-op: the ceiling that
  any Dask-based engine pays per task, regardless of Optuna.

All Optuna baselines run :func:`trivial_objective`, which records the wall-clock
round trip of every ``trial.should_prune()`` in the ``prune_rtt_s`` user attr.

Run as ``python -m benchmarks.baselines`` from the repository root.

How optuna-distributed 0.7.0 works in Dask mode (read from its source)
-----------------------------------------------------------------------
* **Mode selection.** ``DistributedStudy.optimize`` uses the Dask manager only if
  ``client is not None and not isinstance(client.cluster, LocalCluster)``.
  A ``Client(LocalCluster(...))`` therefore silently runs trials in local
  ``multiprocessing`` processes and never touches Dask (checked: zero Dask queues
  are created in that case). ``Client(address)`` has
  ``client.cluster is None`` and so does get Dask mode; :func:`run_optuna_distributed`
  connects by address and additionally asserts, via the scheduler's queue
  extension, that Dask IPC queues were in fact created.
* **Dispatch.** All ``n_trials`` are created up front: ``study.ask()`` is called
  ``n_trials`` times in the client (so every trial is RUNNING in storage from the
  start, and ``datetime_start`` is the dispatch time, not the execution time), one
  ``distributed.Variable`` per trial is created (one scheduler RPC each) to track
  task state, and everything is sent at once with ``client.map(..., pure=False)``.
  There is no windowing; Dask's scheduler queueing decides what runs.
* **IPC.** Every message is pickled and pushed through a ``distributed.Queue``,
  i.e. *through the scheduler*. Workers publish to a single shared queue that
  the client's event loop drains; each trial has its own private response queue.
  Every ``trial.suggest_*`` and ``trial.should_prune()`` is therefore a blocking
  round trip worker -> scheduler -> client (process message against the
  in-memory storage, one message at a time) -> scheduler -> worker, i.e. four
  network hops plus two pickle round trips. The worker waits on its response
  queue with retries of 1, 2, 4, 8, 16 s (31 s total) before giving up.
* **Fire-and-forget messages.** ``trial.report()`` and ``trial.set_user_attr()``
  are one-way queue puts (each still a synchronous RPC to the scheduler)
  processed by the client in FIFO order; user attrs are written into the
  client-side storage, so they are visible in ``study.trials`` afterwards. Because
  the pruned/completed message is sent after the objective returns, attrs set
  before ``raise TrialPruned`` still arrive.
* **Per-trial supervisor thread.** Each task starts a daemon thread polling two
  ``Variable`` objects every 100 ms (two scheduler RPCs per 100 ms per running trial)
  so that it can inject ``WorkerInterrupted`` into the objective on stop.
* **Known hang.** Progress is counted only from completed/pruned/failed
  messages, plus a done-callback that counts futures ending in ``error`` or
  ``cancelled``. If a worker dies mid-trial, Dask reschedules the task; the retry
  sees its state Variable already RUNNING and returns immediately *without* a
  closing message, the future ends as ``finished``, and the event loop waits
  forever (emitting a heartbeat every 60 s, each of which makes the scheduler
  log an ``Exception while handling op queue_get`` traceback). Reproduced with
  distributed 2026.8.0: after one ``os._exit`` in a worker, 19 of 20 trials
  finished, one stayed RUNNING and ``optimize`` never returned. Hence the hard
  timeout used here.
* **Shutdown race.** ``optimize`` returns when the last closing message is
  processed, while the last task is still finishing. Closing the client right
  away logs an error from the done-callback and from the worker-side supervisor
  thread; :func:`run_optuna_distributed` waits for the cluster to go idle first.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import numpy as np
import optuna
import optuna_distributed
from distributed import Client, Future, LocalCluster, as_completed, wait

__all__ = [
    "TrialLike",
    "trivial_objective",
    "run_optuna_distributed",
    "run_plain_optuna",
    "run_raw_dask",
    "run_dask_storage",
    "optuna_distributed_optimize",
    "dask_storage_study",
    "make_sampler",
    "make_study",
    "summarize",
    "main",
]

N_STEPS = 10
"""Number of report/should_prune steps in :func:`trivial_objective`."""

PRUNE_RTT_ATTR = "prune_rtt_s"
"""User attr holding the list of ``should_prune()`` durations, in seconds."""

_T = TypeVar("_T")


class TrialLike(Protocol):
    """The subset of the trial API used by :func:`trivial_objective`.

    Satisfied both by :class:`optuna.trial.Trial` and by
    ``optuna_distributed.trial.DistributedTrial``.
    """

    def suggest_float(self, name: str, low: float, high: float) -> float: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[str]) -> str: ...

    def report(self, value: float, step: int) -> None: ...

    def should_prune(self) -> bool: ...

    def set_user_attr(self, key: str, value: Any) -> None: ...


def trivial_objective(trial: TrialLike) -> float:
    """Run a near-zero-cost objective that exercises suggest, report and prune.

    Suggests ``x`` in [-10, 10], ``y`` in {0..10} and ``c`` in {"a", "b", "c"},
    then reports a decreasing learning curve for :data:`N_STEPS` steps, asking
    ``should_prune()`` after each report. The wall-clock duration of every
    ``should_prune()`` call is stored, in seconds, in the ``prune_rtt_s`` user
    attr (also when the trial ends up pruned).

    Returns:
        ``x**2 + y``.

    Raises:
        optuna.TrialPruned: When the pruner says so.
    """
    x = trial.suggest_float("x", -10.0, 10.0)
    y = trial.suggest_int("y", 0, 10)
    trial.suggest_categorical("c", ["a", "b", "c"])
    final = x**2 + y

    return timed_reports(trial, final, N_STEPS)


def timed_reports(trial: TrialLike, final: float, n_steps: int, step_s: float = 0.0) -> float:
    """Report a decreasing curve towards ``final`` for ``n_steps`` steps (sleeping ``step_s`` per step),
    timing every ``should_prune()`` into the ``prune_rtt_s`` user attr (kept when pruned); returns ``final``."""
    rtts: list[float] = []
    try:
        for step in range(n_steps):
            if step_s:
                time.sleep(step_s)
            trial.report(final * (1.0 + 1.0 / (step + 1)), step)
            start = time.perf_counter()
            prune = trial.should_prune()
            rtts.append(time.perf_counter() - start)
            if prune:
                raise optuna.TrialPruned(f"pruned at step {step}")
    finally:
        trial.set_user_attr(PRUNE_RTT_ATTR, rtts)
    return final


def make_sampler(sampler: str) -> optuna.samplers.BaseSampler:
    """Return the seeded sampler named ``"random"`` or ``"tpe"``."""
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=0)
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=0)
    raise ValueError(f"unknown sampler {sampler!r}; expected 'random' or 'tpe'")


def make_study(sampler: str) -> optuna.Study:
    """Create the in-memory study shared by all Optuna baselines."""
    return optuna.create_study(
        direction="minimize",
        sampler=make_sampler(sampler),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
    )


def summarize(study: optuna.Study, wall_s: float, started_at: datetime) -> dict[str, Any]:
    """Compute throughput and ``should_prune()`` latency from a finished study."""
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = study.get_trials(deepcopy=False, states=finished_states)
    rtts_ms = np.array(
        [rtt * 1e3 for t in finished for rtt in t.user_attrs.get(PRUNE_RTT_ATTR, [])],
        dtype=float,
    )
    completions = [t.datetime_complete for t in finished if t.datetime_complete is not None]
    n_pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in finished)
    return {
        "trials_per_s": len(finished) / wall_s,
        "prune_rtt_ms_median": float(np.median(rtts_ms)) if rtts_ms.size else float("nan"),
        "prune_rtt_ms_p99": float(np.percentile(rtts_ms, 99)) if rtts_ms.size else float("nan"),
        "n_finished": len(finished),
        "n_pruned": n_pruned,
        "n_prune_calls": int(rtts_ms.size),
        "wall_s": wall_s,
        "first_finish_s": ((min(completions) - started_at).total_seconds() if completions else float("nan")),
    }


def _call_with_timeout(fn: Callable[[], _T], timeout_s: float, what: str) -> _T:
    """Run ``fn`` in a daemon thread and give up on it after ``timeout_s``.

    The abandoned thread keeps running until the process exits; this only
    guarantees that the *caller* is not stuck forever.

    Raises:
        TimeoutError: If ``fn`` has not returned within ``timeout_s`` seconds.
    """
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name=f"timeout-guard:{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not finish within {timeout_s:.0f} s")
    if error:
        raise error[0]
    return result[0]


def _n_dask_queues(client: Client) -> int:
    """Count the ``distributed.Queue`` objects known to the scheduler."""

    def count(dask_scheduler: Any) -> int:
        return len(dask_scheduler.extensions["queues"].queues)

    n: int = client.run_on_scheduler(count)
    return n


_SUPERVISOR_POLL_S = 0.1
"""Poll interval of optuna-distributed's per-trial supervisor thread."""


def _wait_until_idle(client: Client, timeout_s: float = 10.0) -> None:
    """Wait until no task is processing, then let supervisor threads exit.

    ``optimize`` returns as soon as the last closing message is processed, while
    the last tasks are still running their epilogue (``Variable.set``) and their
    supervisor threads still poll. Closing the client or cluster at that point
    makes optuna-distributed log spurious errors (a done-callback putting to a
    queue through a closed client, a supervisor thread without a client).
    """
    deadline = time.monotonic() + timeout_s
    while any(client.processing().values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"tasks still processing after {timeout_s:.0f} s")
        time.sleep(0.01)
    time.sleep(3 * _SUPERVISOR_POLL_S)


def optuna_distributed_optimize(
    scheduler_address: str,
    study: optuna.Study,
    objective: Callable[[Any], Any],
    n_trials: int,
    timeout: float | None = None,
    limit_s: float = 600.0,
) -> dict[str, float]:
    """Run ``objective`` through optuna-distributed 0.7 in Dask mode and return its timings.

    Connects a fresh ``Client`` by *address* (a ``LocalCluster``-backed client object would make
    optuna-distributed fall back to multiprocessing) and checks, via the scheduler's queue extension, that
    Dask IPC queues were in fact created. ``timeout`` is optuna-distributed's own (it then stops the running
    trials); ``limit_s`` is ours, because optuna-distributed hangs forever if a worker dies mid-trial.

    Returns:
        ``wall_s`` (the ``optimize`` call), ``connect_s`` and ``started_at`` (``time.time()`` when
        ``optimize`` was called).

    Raises:
        TimeoutError: If ``optimize`` does not return within ``limit_s``.
        RuntimeError: If optuna-distributed did not actually use Dask IPC.
    """
    t0 = time.perf_counter()
    client = _connect(scheduler_address)
    connect_s = time.perf_counter() - t0
    try:
        if client.cluster is not None:
            raise RuntimeError("client must be connected by address, not to a cluster object")
        queues_before = _n_dask_queues(client)
        distributed_study = optuna_distributed.from_study(study, client)
        started_at = time.time()
        t0 = time.perf_counter()
        _call_with_timeout(
            lambda: distributed_study.optimize(objective, n_trials=n_trials, timeout=timeout),
            limit_s,
            "optuna-distributed optimize",
        )
        wall_s = time.perf_counter() - t0
        if _n_dask_queues(client) <= queues_before:
            raise RuntimeError("optuna-distributed did not create Dask queues: not in Dask mode")
        _wait_until_idle(client, timeout_s=30.0 if timeout else 10.0)
    finally:
        client.close()
    return {"wall_s": wall_s, "connect_s": connect_s, "started_at": started_at}


def _connect(scheduler_address: str, attempts: int = 3) -> Client:
    """A new client by address; retried, because on a loaded 2-core machine the handshake sometimes fails
    (``distributed`` asserts it reads exactly one message at stream start)."""
    for attempt in range(attempts):
        try:
            return Client(scheduler_address, timeout=30)
        except (AssertionError, OSError, TimeoutError):
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def run_optuna_distributed(
    scheduler_address: str,
    n_trials: int,
    sampler: str = "random",
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Benchmark optuna-distributed in Dask mode on :func:`trivial_objective`.

    Args:
        scheduler_address: Address of a running Dask scheduler.
        n_trials: Number of trials to run.
        sampler: ``"random"`` or ``"tpe"`` (both seeded with 0).
        timeout_s: Hard limit on ``optimize``; optuna-distributed hangs forever
            if a worker dies mid-trial.

    Returns:
        ``trials_per_s`` (finished = complete + pruned, over the wall time of
        ``optimize``), ``prune_rtt_ms_median``, ``prune_rtt_ms_p99``,
        ``n_finished``, plus ``n_pruned``, ``n_prune_calls``, ``wall_s``,
        ``first_finish_s`` (dispatch to first finished trial) and ``connect_s``
        (time to connect the client).

    Raises:
        TimeoutError: If ``optimize`` does not return within ``timeout_s``.
        RuntimeError: If optuna-distributed did not actually use Dask IPC.
    """
    study = make_study(sampler)
    timing = optuna_distributed_optimize(scheduler_address, study, trivial_objective, n_trials, limit_s=timeout_s)
    started_at = datetime.fromtimestamp(timing["started_at"])
    return {**summarize(study, timing["wall_s"], started_at), "connect_s": timing["connect_s"]}


def run_dask_storage(
    client: Client,
    study: optuna.Study,
    objective: Callable[[Any], Any],
    n_trials: int,
    n_parallel: int | None = None,
) -> float:
    """The pattern Optuna documents for Dask: a ``DaskStorage`` study and one ``study.optimize`` per slot.

    ``study`` must live in a :class:`optuna_integration.DaskStorage` (the storage is served by the
    scheduler; every storage call from a worker is a scheduler RPC). ``n_parallel`` (default: the cluster's
    worker threads) ``client.submit(study.optimize, ...)`` calls share ``n_trials``; each runs the sampler
    and pruner on its worker, on its own copy of the sampler.

    Returns:
        The wall time in seconds until every ``optimize`` call returned.
    """
    n_parallel = n_parallel or sum(client.nthreads().values())
    shares = [n_trials // n_parallel + (1 if i < n_trials % n_parallel else 0) for i in range(n_parallel)]
    t0 = time.perf_counter()
    futures = [client.submit(study.optimize, objective, n_trials=k, pure=False) for k in shares if k]
    client.gather(futures)
    return time.perf_counter() - t0


def dask_storage_study(client: Client, **kwargs: Any) -> optuna.Study:
    """A new study in a fresh ``DaskStorage`` (in-memory storage on the scheduler)."""
    from optuna_integration import DaskStorage

    return optuna.create_study(storage=DaskStorage(client=client), **kwargs)


def run_plain_optuna(n_trials: int, n_jobs: int = 2, sampler: str = "random") -> dict[str, Any]:
    """Benchmark plain Optuna in one process with ``n_jobs`` threads.

    Returns:
        The same keys as :func:`run_optuna_distributed`, without ``connect_s``.
    """
    study = make_study(sampler)
    started_at = datetime.now()
    t0 = time.perf_counter()
    study.optimize(trivial_objective, n_trials=n_trials, n_jobs=n_jobs)
    wall_s = time.perf_counter() - t0
    return summarize(study, wall_s, started_at)


def _noop() -> None:
    """Do nothing; the task submitted by :func:`run_raw_dask`."""


def _submit_rolling(client: Client, n_tasks: int, window: int) -> None:
    """Keep at most ``window`` no-op tasks in flight until ``n_tasks`` are done."""
    in_flight = as_completed()
    submitted = 0
    for _ in range(min(window, n_tasks)):
        in_flight.add(client.submit(_noop, pure=False))
        submitted += 1
    future: Future[None]
    for future in in_flight:
        if future.status != "finished":
            raise RuntimeError(f"no-op task ended as {future.status}")
        if submitted < n_tasks:
            in_flight.add(client.submit(_noop, pure=False))
            submitted += 1


def _submit_all(client: Client, n_tasks: int) -> None:
    """Submit ``n_tasks`` no-op tasks at once and wait for all of them."""
    futures = [client.submit(_noop, pure=False) for _ in range(n_tasks)]
    done, not_done = wait(futures)
    failed = [f for f in done if f.status != "finished"]
    if not_done or failed:
        raise RuntimeError(f"{len(failed)} no-op tasks failed, {len(not_done)} not done")


def run_raw_dask(client: Client, n_tasks: int) -> dict[str, Any]:
    """Benchmark bare Dask task throughput with a no-op task.

    Two modes: a rolling window of in-flight tasks equal to twice the total
    worker thread count (the shape of a trial engine with bounded concurrency),
    and everything submitted at once. Results are not fetched, only completion
    is awaited.

    Returns:
        ``rolling_tasks_per_s``, ``all_at_once_tasks_per_s``, ``window``,
        ``n_tasks``.
    """
    window = 2 * sum(client.nthreads().values())
    client.submit(_noop, pure=False).result()  # warm up: ship the function once

    t0 = time.perf_counter()
    _submit_rolling(client, n_tasks, window)
    rolling_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    _submit_all(client, n_tasks)
    all_s = time.perf_counter() - t0

    return {
        "rolling_tasks_per_s": n_tasks / rolling_s,
        "all_at_once_tasks_per_s": n_tasks / all_s,
        "window": window,
        "n_tasks": n_tasks,
    }


def _format(name: str, result: dict[str, Any]) -> str:
    """One human-readable line per baseline."""
    fields = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    return f"{name}: {fields}"


def main(argv: Sequence[str] | None = None) -> None:
    """Start a 2-worker ``LocalCluster`` and run every baseline against it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sampler", choices=["random", "tpe"], default="random")
    parser.add_argument("--od-trials", type=int, default=200, help="optuna-distributed trials")
    parser.add_argument("--plain-trials", type=int, default=1000, help="plain Optuna trials")
    parser.add_argument("--dask-tasks", type=int, default=1000, help="raw Dask tasks")
    parser.add_argument("--timeout", type=float, default=300.0, help="optuna-distributed limit")
    args = parser.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna_distributed").setLevel(logging.WARNING)

    print(_format("plain_optuna", run_plain_optuna(args.plain_trials, 2, args.sampler)), flush=True)

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        print(f"cluster_start_s={time.perf_counter() - t0:.3f}", flush=True)
        with Client(cluster) as client:
            print(_format("raw_dask", run_raw_dask(client, args.dask_tasks)), flush=True)
        result = run_optuna_distributed(cluster.scheduler_address, args.od_trials, args.sampler, args.timeout)
        print(_format("optuna_distributed", result), flush=True)


if __name__ == "__main__":
    # Re-import so that worker processes unpickle ``benchmarks.baselines.*``
    # by reference instead of receiving ``__main__`` functions by value.
    from benchmarks.baselines import main as _main

    _main()
