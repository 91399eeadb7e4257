"""Engine overhead: daskopt vs optuna-distributed 0.7 on the same 2-worker LocalCluster, in one run.

Measures, for the trivial objective of :mod:`benchmarks.baselines` (3 suggests, 10 report +
should_prune steps, MedianPruner):

(a) the median ``should_prune()`` round trip seen inside a trial, and
(b) trials per second,

for daskopt and for optuna-distributed (Dask mode: connected by scheduler address). Several repetitions,
medians reported. Last line::

    RESULT engine prune_rtt_ms=<d> baseline_prune_rtt_ms=<b> trials_per_s=<t> baseline_trials_per_s=<u> ...

Run: ``python -m benchmarks.engine`` or ``python -m benchmarks engine`` (``--quick`` for the smoke setting).
:mod:`benchmarks.overhead` extends it to the other engines users would pick instead.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import optuna
from distributed import Client

import daskopt
from benchmarks.baselines import make_study, run_optuna_distributed, summarize, trivial_objective
from benchmarks.common import dask_cluster


def run_daskopt(client: Client, n_trials: int, sampler: str = "random") -> dict[str, Any]:
    """One daskopt run of the trivial objective; same study settings as the baselines."""
    study = make_study(sampler)
    started_at = datetime.now()
    t0 = time.perf_counter()
    daskopt.optimize(study, trivial_objective, n_trials=n_trials, client=client, show_progress_bar=False)
    return summarize(study, time.perf_counter() - t0, started_at)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting for smoke tests")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sampler", choices=["random", "tpe"], default="random")
    args = parser.parse_args(argv)
    n_trials, baseline_trials, repeats = (20, 10, 1) if args.quick else (500, 150, args.repeats)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with dask_cluster(2, 1) as client:
        run_daskopt(client, 10, args.sampler)  # warm-up: workers import daskopt, first connections
        ours = []
        for i in range(repeats):
            ours.append(run_daskopt(client, n_trials, args.sampler))
            print(f"daskopt run {i + 1}: {_brief(ours[-1])}", flush=True)
        theirs = []
        for i in range(repeats):
            theirs.append(run_optuna_distributed(client.scheduler.address, baseline_trials, args.sampler))
            print(f"optuna-distributed run {i + 1}: {_brief(theirs[-1])}", flush=True)

    rtt, base_rtt = _median(ours, "prune_rtt_ms_median"), _median(theirs, "prune_rtt_ms_median")
    tps, base_tps = _median(ours, "trials_per_s"), _median(theirs, "trials_per_s")
    p99 = _median(ours, "prune_rtt_ms_p99")
    print(
        f"RESULT engine prune_rtt_ms={rtt:.3f} baseline_prune_rtt_ms={base_rtt:.3f} trials_per_s={tps:.1f} "
        f"baseline_trials_per_s={base_tps:.1f} prune_rtt_p99_ms={p99:.3f} "
        f"prune_speedup={base_rtt / rtt:.1f} throughput_ratio={tps / base_tps:.1f} sampler={args.sampler}"
    )


def _brief(result: dict[str, Any]) -> str:
    return (
        f"{result['trials_per_s']:.1f} trials/s, should_prune median {result['prune_rtt_ms_median']:.3f} ms "
        f"p99 {result['prune_rtt_ms_p99']:.3f} ms ({result['n_finished']} trials, {result['n_pruned']} pruned)"
    )


if __name__ == "__main__":
    main()
