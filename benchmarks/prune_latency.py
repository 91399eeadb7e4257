"""prune_latency: p50/p99 of ``should_prune()`` as seen inside trials, 8 trials running at once.

A 2-worker × 4-thread ``LocalCluster``, ``n_concurrent=8``. Each trial works ``step_s`` per step (a sleep:
the GIL is free, as during numpy or GPU work), then reports and calls ``should_prune()``, timed inside
the trial; ``MedianPruner(5, n_warmup_steps=5)`` prunes about half of them. Baselines on the same cluster:
optuna-distributed 0.7 (every ``should_prune`` is a round trip through the scheduler's queues to the client)
and Optuna on ``DaskStorage`` (the pruner runs in the worker, reading all trials over scheduler RPCs).

Rows: daskopt on the direct channel, daskopt with ``channel="relay"`` (every message through the scheduler),
and the baselines. Targets: p50 < 1 ms, p99 < 5 ms direct; p50 <= 2 ms, p99 <= 10 ms relayed.
"""

from __future__ import annotations

import functools
from typing import Any

import optuna

from benchmarks.baselines import PRUNE_RTT_ATTR
from benchmarks.common import (
    Settings,
    dask_cluster,
    interleaved,
    medians,
    percentile,
    ratio,
    run_dask_storage,
    run_daskopt,
    run_optuna_distributed,
)
from benchmarks.objectives import stepping_objective

NAME = "prune_latency"
DESCRIPTION = "should_prune() p50/p99 inside trials, 8 concurrent: daskopt vs optuna-distributed, DaskStorage"
N_CONCURRENT = 8


def _study_kwargs() -> dict[str, Any]:
    return {
        "direction": "minimize",
        "sampler": optuna.samplers.RandomSampler(seed=0),
        "pruner": optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
    }


def latencies(study: optuna.Study, wall_s: float) -> dict[str, Any]:
    """Pooled ``should_prune()`` durations of every finished trial."""
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    rtts_ms = [rtt * 1e3 for t in finished for rtt in t.user_attrs.get(PRUNE_RTT_ATTR, [])]
    return {
        "p50_ms": percentile(rtts_ms, 50),
        "p99_ms": percentile(rtts_ms, 99),
        "max_ms": max(rtts_ms, default=float("nan")),
        "n_calls": len(rtts_ms),
        "n_trials": len(finished),
        "wall_s": wall_s,
    }


def run(settings: Settings) -> dict[str, Any]:
    n_ours, n_baseline, n_steps = settings.pick(smoke=(16, 8, 10), quick=(48, 24, 30), full=(120, 48, 40))
    step_s = 0.01
    repeats = settings.reps()
    objective = functools.partial(stepping_objective, n_steps=n_steps, step_s=step_s)
    print(f" {n_steps} steps of {step_s * 1e3:.0f} ms; daskopt {n_ours} trials, baselines {n_baseline}", flush=True)

    with dask_cluster(2, 4) as client:

        def ours(channel: str = "direct") -> dict[str, Any]:
            study = optuna.create_study(**_study_kwargs())
            wall = run_daskopt(client, study, objective, n_trials=n_ours, n_concurrent=N_CONCURRENT, channel=channel)
            return latencies(study, wall)

        def relayed() -> dict[str, Any]:
            return ours("relay")

        def optuna_distributed() -> dict[str, Any]:
            study = optuna.create_study(**_study_kwargs())
            return latencies(study, run_optuna_distributed(client, study, objective, n_baseline))

        def dask_storage() -> dict[str, Any]:
            study, wall = run_dask_storage(client, objective, n_baseline, **_study_kwargs())
            return latencies(study, wall)

        run_daskopt(client, optuna.create_study(), objective, n_trials=N_CONCURRENT)  # warm-up
        runs = interleaved(
            repeats,
            {
                "daskopt": ours,
                "daskopt (relay)": relayed,
                "optuna-distributed": optuna_distributed,
                "DaskStorage": dask_storage,
            },
        )
    m = {name: medians(results) for name, results in runs.items()}
    ours_m, relay, od, ds = m["daskopt"], m["daskopt (relay)"], m["optuna-distributed"], m["DaskStorage"]
    return {
        "p50_ms": ours_m["p50_ms"],
        "p99_ms": ours_m["p99_ms"],
        "relay_p50_ms": relay["p50_ms"],
        "relay_p99_ms": relay["p99_ms"],
        "od_p50_ms": od["p50_ms"],
        "od_p99_ms": od["p99_ms"],
        "dask_storage_p50_ms": ds["p50_ms"],
        "dask_storage_p99_ms": ds["p99_ms"],
        "p50_speedup_vs_od": ratio(od["p50_ms"], ours_m["p50_ms"]),
        "p99_speedup_vs_od": ratio(od["p99_ms"], ours_m["p99_ms"]),
        "n_calls": int(ours_m["n_calls"]),
        "target_p50_1ms": ours_m["p50_ms"] < 1.0,
        "target_p99_5ms": ours_m["p99_ms"] < 5.0,
        "relay_target_p50_2ms": relay["p50_ms"] <= 2.0,
        "relay_target_p99_10ms": relay["p99_ms"] <= 10.0,
        "repeats": repeats,
    }
