"""scale: 10,000 trials of the trivial objective: total time, driver memory, per-trial cost as the study grows.

The trivial objective of :mod:`benchmarks.baselines` (3 define-by-run suggests, 10 × report +
should_prune), random sampler, in-memory storage, a 2-worker × 1-thread ``LocalCluster``. Variants:

- ``median``: daskopt with ``MedianPruner(5)`` (as in ``overhead``);
- ``nop``: daskopt with ``NopPruner`` (the same messages, no pruning work): isolates what the pruner costs;
- ``n_jobs``: plain Optuna in this process, ``n_jobs=2``, ``MedianPruner(5)``: the same Optuna work
  without any engine.

Each trial's end is timestamped by a callback, with the driver's CPU time (all its threads, including the
Dask scheduler that a ``LocalCluster`` runs in the driver process). Per-trial cost at 1k / 5k / 10k trials
(``--quick``: 200 / 1k / 2k) is the wall and CPU time per trial over the 500 (``--quick``: 100) trials
ending there: flat means the loop does not slow down as the study grows. Driver memory: RSS sampled every
50 ms (peak minus the RSS before the call), per trial; the largest over the repetitions (the first run's:
later ones reuse the heap the earlier studies freed).

Garbage collector pauses: each full (generation 2) collection during the call, timed by ``gc.callbacks``
(its wall time holds the GIL: every thread of the driver, the loop included, waits), once trials run
(from the first trial's end), and apart from those the longest before it. A full collection
walks every object it tracks, so as the study grows, so does the pause, unless the survivors of earlier
ones are frozen (:mod:`daskopt.engine.gc_pauses`); plain Optuna (``n_jobs``) is the baseline.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import optuna
import psutil

from benchmarks.baselines import trivial_objective
from benchmarks.common import Settings, dask_cluster, interleaved, medians, ratio, run_daskopt

NAME = "scale"
DESCRIPTION = "10,000 trials: total time, driver RSS, per-trial wall/CPU cost at 1k/5k/10k"


class Recorder:
    """Timestamps every finished trial (wall and process CPU) and samples the process RSS."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._process = psutil.Process()
        self.rss_before = self._process.memory_info().rss
        self.rss_peak = self.rss_before
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.full_gcs: list[tuple[float, float]] = []  # (start, wall seconds) of each full collection
        self._gc_start = 0.0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start:
            self.full_gcs.append((self._gc_start, time.perf_counter() - self._gc_start))

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.rss_peak = max(self.rss_peak, self._process.memory_info().rss)

    def __enter__(self) -> Recorder:
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        self._sampler.start()
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)
        self.rss_peak = max(self.rss_peak, self._process.memory_info().rss)
        self._stop.set()
        self._sampler.join()

    def gc_fields(self, prefix: str = "") -> dict[str, Any]:
        """The full collections once trials were running (from the first trial's end): how many, the
        longest and all together (ms); and the longest before that (daskopt makes one as a study starts,
        before any trial waits)."""
        first_end = self.wall[0] if self.wall else float("inf")
        during = [seconds for start, seconds in self.full_gcs if start >= first_end]
        before = [seconds for start, seconds in self.full_gcs if start < first_end]
        return {
            f"{prefix}full_gcs": len(during),
            f"{prefix}max_full_gc_ms": 1e3 * max(during, default=0.0),
            f"{prefix}full_gc_ms": 1e3 * sum(during),
            f"{prefix}start_full_gc_ms": 1e3 * max(before, default=0.0),
        }

    def fields(self, marks: list[int], window: int, labels: list[str]) -> dict[str, Any]:
        n = len(self.wall)
        out: dict[str, Any] = {
            "total_s": self.wall[-1] - self.t0,
            "trials_per_s": n / (self.wall[-1] - self.t0),
            "rss_mb": (self.rss_peak - self.rss_before) / 2**20,
            "kb_per_trial": (self.rss_peak - self.rss_before) / 1024 / n,
            **self.gc_fields(),
        }
        for mark, label in zip(marks, labels, strict=True):
            end, start = min(mark, n) - 1, max(0, min(mark, n) - 1 - window)
            out[f"ms_per_trial_{label}"] = 1e3 * (self.wall[end] - self.wall[start]) / (end - start)
            out[f"cpu_ms_per_trial_{label}"] = 1e3 * (self.cpu[end] - self.cpu[start]) / (end - start)
        return out


def _study(pruner: optuna.pruners.BasePruner) -> optuna.Study:
    return optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0), pruner=pruner)


def run(settings: Settings) -> dict[str, Any]:
    n_trials = settings.pick(smoke=300, quick=2000, full=10000)
    window = settings.pick(smoke=30, quick=100, full=500)
    marks = [n_trials // 10, n_trials // 2, n_trials]
    labels = [f"{m // 1000}k" if m >= 1000 else str(m) for m in marks]
    repeats = settings.reps(smoke=1, quick=1, full=2)
    print(f" {n_trials} trials; per-trial cost over the {window} trials ending at {', '.join(labels)}", flush=True)

    def measure(run_study: Any, pruner: optuna.pruners.BasePruner) -> dict[str, Any]:
        study = _study(pruner)
        with Recorder() as recorder:
            run_study(study, recorder)
        return recorder.fields(marks, window, labels)

    with dask_cluster(2, 1) as client:
        run_daskopt(client, _study(optuna.pruners.NopPruner()), trivial_objective, n_trials=10)  # warm-up

        def ours(pruner_name: str) -> Any:
            def go() -> dict[str, Any]:
                pruner = optuna.pruners.MedianPruner(5) if pruner_name == "median" else optuna.pruners.NopPruner()
                return measure(
                    lambda s, r: run_daskopt(client, s, trivial_objective, n_trials=n_trials, callbacks=[r]), pruner
                )

            return go

        def n_jobs() -> dict[str, Any]:
            return measure(
                lambda s, r: s.optimize(trivial_objective, n_trials=n_trials, n_jobs=2, callbacks=[r]),
                optuna.pruners.MedianPruner(5),
            )

        runs = interleaved(repeats, {"median": ours("median"), "nop": ours("nop"), "n_jobs": n_jobs})
    m = {name: medians(results) for name, results in runs.items()}
    # memory: the largest growth over the repetitions, which is the first one's: later runs in this process
    # reuse the heap that the earlier studies freed, so their RSS barely moves
    fields: dict[str, Any] = {"total_s": m["median"]["total_s"]}
    fields["rss_mb"] = max(r["rss_mb"] for r in runs["median"])
    fields["kb_per_trial"] = max(r["kb_per_trial"] for r in runs["median"])
    for variant in ("median", "nop", "n_jobs"):
        for label in labels:
            prefix = "" if variant == "median" else f"{variant}_"
            fields[f"{prefix}ms_per_trial_{label}"] = m[variant][f"ms_per_trial_{label}"]
            fields[f"{prefix}cpu_ms_per_trial_{label}"] = m[variant][f"cpu_ms_per_trial_{label}"]
    fields["growth_last_vs_first"] = ratio(
        m["median"][f"ms_per_trial_{labels[-1]}"], m["median"][f"ms_per_trial_{labels[0]}"]
    )
    fields["nop_growth_last_vs_first"] = ratio(
        m["nop"][f"ms_per_trial_{labels[-1]}"], m["nop"][f"ms_per_trial_{labels[0]}"]
    )
    for variant in ("median", "n_jobs"):
        prefix = "" if variant == "median" else f"{variant}_"
        for key in ("full_gcs", "max_full_gc_ms", "full_gc_ms", "start_full_gc_ms"):
            fields[f"{prefix}{key}"] = max(r[key] for r in runs[variant])  # the worst repetition's
    fields["nop_total_s"] = m["nop"]["total_s"]
    fields["n_jobs_total_s"] = m["n_jobs"]["total_s"]
    fields["n_trials"] = n_trials
    fields["repeats"] = repeats
    return fields
