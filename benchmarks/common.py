"""What every benchmark shares: settings per mode, the cluster, repetitions and medians, the RESULT line.

A benchmark module exposes ``NAME``, ``DESCRIPTION`` and ``run(settings) -> dict``: it prints one progress
line per run and returns the fields of its ``RESULT`` line, which :func:`emit` prints last. The dispatcher
(:mod:`benchmarks.__main__`) runs one or all of them in this process.

Modes: ``full`` (the published numbers), ``--quick`` (a few minutes for the whole suite on 2 cores) and
``--smoke`` (the tiniest setting that still runs every code path; the test suite uses it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import socket
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import optuna
from distributed import Client, LocalCluster

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """How big a benchmark runs: ``mode`` picks the sizes, ``repeats`` overrides the repetition count."""

    mode: str = "full"
    repeats: int | None = None

    def pick(self, smoke: T, quick: T, full: T) -> T:
        """The value for this mode."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.mode]

    def reps(self, smoke: int = 1, quick: int = 2, full: int = 3) -> int:
        """Repetitions: ``--repeats`` if given, else the mode's default."""
        return self.repeats if self.repeats is not None else self.pick(smoke, quick, full)


# ------------------------------------------------------------------------------------------ logging
def quiet() -> None:
    """Keep the output to our own lines: no per-trial Optuna logs, no Dask or Ray chatter."""
    with contextlib.suppress(ImportError):
        import optuna_distributed  # noqa: F401  (its import sets its own logger to INFO: import it first)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("optuna_distributed", "distributed", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("daskopt").setLevel(logging.WARNING)  # a worker restart or a lost trial must show
    # optuna-distributed's stop leaves queue_get calls to time out on the scheduler, which logs each one
    logging.getLogger("distributed.core").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def _quiet_worker() -> None:
    quiet()


# ------------------------------------------------------------------------------------------ clusters
_shared: dict[tuple[int, int], tuple[LocalCluster, Client]] | None = None


@contextlib.contextmanager
def shared_clusters() -> Iterator[None]:
    """Within this block, :func:`dask_cluster` reuses one cluster per shape (the smoke run uses it)."""
    global _shared
    _shared = {}
    try:
        yield
    finally:
        clusters, _shared = _shared, None
        for cluster, client in clusters.values():
            client.close()
            cluster.close()


@contextlib.contextmanager
def dask_cluster(n_workers: int, threads_per_worker: int) -> Iterator[Client]:
    """A ``LocalCluster`` of worker processes and a client to it, workers' logs quieted."""
    key = (n_workers, threads_per_worker)
    if _shared is not None and key in _shared:
        yield _shared[key][1]
        return
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    client.run(_quiet_worker)
    if _shared is not None:
        _shared[key] = (cluster, client)
        yield client
        return
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def slots(client: Client) -> int:
    """Worker threads of the cluster."""
    return sum(client.nthreads().values())


# ------------------------------------------------------------------------------------ repetitions
def interleaved(repeats: int, runners: Mapping[str, Callable[..., dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Run every runner once per repetition, alternating engines so that drift hits all of them alike.

    Prints one line per run (``name run i: key=value ...``) and returns every run's fields by runner.
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    for i in range(repeats):
        for name, runner in runners.items():
            result = runner()
            runs[name].append(result)
            print(f"  {name} run {i + 1}/{repeats}: {brief(result)}", flush=True)
    return runs


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over the runs (non-numeric fields: the first run's)."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [run[key] for run in runs if key in run]
        if isinstance(first, bool) or not isinstance(first, int | float):
            out[key] = first
        else:
            finite = [float(v) for v in values if not math.isnan(float(v))]
            out[key] = statistics.median(finite) if finite else math.nan
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, numpy's default); ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# -------------------------------------------------------------------------------------- per-slot idle
@dataclass(frozen=True)
class SlotSpan:
    """When one trial ran, and on which worker thread (host:pid:thread)."""

    slot: str
    start: float  # time.time() on the worker, at the objective's first line
    end: float  # time.time() on the worker, at its last line
    number: int = 0


def where_am_i() -> str:
    """This worker thread's identity: one slot of the cluster."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def slot_idle(spans: Iterable[SlotSpan], from_number: int = 0) -> dict[str, float]:
    """How much of each slot's time passed between its trials.

    For every slot, trials are ordered by start; a gap is the time from one trial's end to the next one's
    start on that slot. Only gaps before a trial numbered ``>= from_number`` count (to look at the late part
    of a study), over the busy-plus-gap time of the same trials.

    Returns ``idle_frac`` (gaps / (gaps + trial time)), ``gap_ms_median``, ``gap_ms_p99``, ``n_slots``.
    """
    by_slot: dict[str, list[SlotSpan]] = {}
    for span in spans:
        by_slot.setdefault(span.slot, []).append(span)
    gaps: list[float] = []
    busy = 0.0
    for runs in by_slot.values():
        runs.sort(key=lambda s: s.start)
        for previous, current in zip(runs, runs[1:], strict=False):
            if current.number >= from_number:
                gaps.append(max(0.0, current.start - previous.end))
                busy += current.end - current.start
    total = busy + sum(gaps)
    return {
        "idle_frac": sum(gaps) / total if total else math.nan,
        "gap_ms_median": percentile(gaps, 50) * 1e3,
        "gap_ms_p99": percentile(gaps, 99) * 1e3,
        "n_slots": float(len(by_slot)),
    }


def spans_from_study(study: optuna.Study, attr: str = "span") -> list[SlotSpan]:
    """Slot spans recorded by objectives in the ``[slot, t_start, t_end]`` user attr ``attr``."""
    spans = []
    for trial in study.get_trials(deepcopy=False):
        span = trial.user_attrs.get(attr)
        if span is not None:
            spans.append(SlotSpan(span[0], span[1], span[2], trial.number))
    return spans


# ------------------------------------------------------------------------------------------- engines
# One function per engine, each running ``objective`` on a given study and returning the wall time (s).
def run_daskopt(client: Client, study: optuna.Study, objective: Callable[[Any], Any], **kwargs: Any) -> float:
    """``daskopt.optimize`` (no progress line); ``kwargs`` go to it (``n_trials``, ``n_concurrent``, ...)."""
    import daskopt

    t0 = time.perf_counter()
    daskopt.optimize(study, objective, client=client, show_progress_bar=False, **kwargs)
    return time.perf_counter() - t0


def run_optuna_distributed(
    client: Client, study: optuna.Study, objective: Callable[[Any], Any], n_trials: int, timeout: float | None = None
) -> float:
    """optuna-distributed 0.7 in Dask mode on ``client``'s scheduler (a second client, by address)."""
    from benchmarks.baselines import optuna_distributed_optimize

    limit = 600.0 if timeout is None else timeout + 120.0
    return optuna_distributed_optimize(client.scheduler.address, study, objective, n_trials, timeout, limit)["wall_s"]


def run_dask_storage(
    client: Client, objective: Callable[[Any], Any], n_trials: int, **study_kwargs: Any
) -> tuple[optuna.Study, float]:
    """A fresh ``DaskStorage`` study (``study_kwargs``: sampler, pruner, direction) and one
    ``client.submit(study.optimize, ...)`` per worker thread; returns the study and the wall time."""
    from benchmarks.baselines import dask_storage_study
    from benchmarks.baselines import run_dask_storage as optimize_on_dask

    study = dask_storage_study(client, **study_kwargs)
    return study, optimize_on_dask(client, study, objective, n_trials)


def run_n_jobs(study: optuna.Study, objective: Callable[[Any], Any], n_trials: int, n_jobs: int) -> float:
    """Plain Optuna in this process, ``n_jobs`` threads."""
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, n_jobs=n_jobs)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- output
def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.3g}" if magnitude >= 10 else f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def brief(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={fmt(value)}" for key, value in fields.items() if not isinstance(value, list | dict))


def result_line(name: str, fields: dict[str, Any]) -> str:
    """``RESULT <name> key=value ...``: machine-readable, one line."""
    return f"RESULT {name} {brief(fields)}"


def emit(name: str, fields: dict[str, Any]) -> None:
    print(result_line(name, fields), flush=True)


def versions() -> str:
    names = ["dask", "distributed", "optuna", "optuna-distributed", "optuna-integration", "ray"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return f"{os.cpu_count()} CPUs, load average {load:.2f}"
