"""overhead: trials/s of the trivial objective, daskopt vs every engine a user would pick instead.

The trivial objective of :mod:`benchmarks.baselines` (3 define-by-run suggests, 10 × report +
should_prune, ``MedianPruner(5)``) on a 2-worker × 1-thread ``LocalCluster``, random and TPE samplers:

- daskopt;
- optuna-distributed 0.7 in Dask mode (connected by scheduler address);
- Optuna's ``DaskStorage`` (optuna-integration) with the documented ``client.submit(study.optimize, ...)``
  pattern, one ``optimize`` per worker thread;
- plain Optuna in this process with ``n_jobs=2`` (threads; no inter-process work at all);
- raw Dask: ``client.submit`` of a no-op per trial (the floor any Dask engine pays per task), all at once
  and with a rolling window of 2 × slots.

daskopt also runs the baselines' (smaller) trial count, so the ratio at equal study size is printed too
(``*_vs_od_same_n``): TPE's ask costs more the more trials it has seen, so a longer run is slower per trial.

Targets: ≥ 10× optuna-distributed, ≥ 50% of raw Dask's task rate (all at once), random sampler.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import optuna

from benchmarks.baselines import (
    dask_storage_study,
    make_sampler,
    run_dask_storage,
    run_optuna_distributed,
    run_plain_optuna,
    run_raw_dask,
    summarize,
    trivial_objective,
)
from benchmarks.common import Settings, dask_cluster, interleaved, medians, ratio
from benchmarks.engine import run_daskopt

NAME = "overhead"
DESCRIPTION = "trials/s of a trivial objective: daskopt vs optuna-distributed, DaskStorage, n_jobs, raw Dask"
SAMPLERS = ("random", "tpe")


def run_with_dask_storage(client: Any, n_trials: int, sampler: str) -> dict[str, Any]:
    study = dask_storage_study(
        client,
        sampler=make_sampler(sampler),
        direction="minimize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
    )
    started_at = datetime.now()
    wall_s = run_dask_storage(client, study, trivial_objective, n_trials)
    return summarize(study, wall_s, started_at)


def _keep(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("trials_per_s", "prune_rtt_ms_median", "prune_rtt_ms_p99", "n_finished", "wall_s")
    return {key: result[key] for key in keys}


def run(settings: Settings) -> dict[str, Any]:
    n_ours, n_baseline, n_plain, n_raw = settings.pick(
        smoke=(30, 10, 30, 30), quick=(300, 60, 300, 300), full=(1000, 150, 1000, 1000)
    )
    repeats = settings.reps()
    fields: dict[str, Any] = {}
    with dask_cluster(2, 1) as client:
        address = client.scheduler.address
        run_daskopt(client, 10, "random")  # warm-up: workers import daskopt, first connections
        for sampler in SAMPLERS:
            print(f" sampler={sampler}: daskopt {n_ours} trials, baselines {n_baseline}, n_jobs {n_plain}", flush=True)
            runners: dict[str, Callable[..., dict[str, Any]]] = {
                "daskopt": lambda s=sampler: _keep(run_daskopt(client, n_ours, s)),
                # the baselines' trial count too: TPE's cost per ask grows with the trials it has seen
                f"daskopt {n_baseline} trials": lambda s=sampler: _keep(run_daskopt(client, n_baseline, s)),
                "optuna-distributed": lambda s=sampler: _keep(run_optuna_distributed(address, n_baseline, s)),
                "DaskStorage": lambda s=sampler: _keep(run_with_dask_storage(client, n_baseline, s)),
                "optuna n_jobs=2": lambda s=sampler: _keep(run_plain_optuna(n_plain, 2, s)),
            }
            if sampler == "random":
                runners["raw Dask"] = lambda: run_raw_dask(client, n_raw)
            runs = {name: medians(results) for name, results in interleaved(repeats, runners).items()}
            ours = runs["daskopt"]["trials_per_s"]
            od = runs["optuna-distributed"]["trials_per_s"]
            ds = runs["DaskStorage"]["trials_per_s"]
            fields.update(
                {
                    f"{sampler}_trials_per_s": ours,
                    f"{sampler}_od_trials_per_s": od,
                    f"{sampler}_dask_storage_trials_per_s": ds,
                    f"{sampler}_n_jobs_trials_per_s": runs["optuna n_jobs=2"]["trials_per_s"],
                    f"{sampler}_vs_od": ratio(ours, od),
                    f"{sampler}_same_n_trials_per_s": runs[f"daskopt {n_baseline} trials"]["trials_per_s"],
                    f"{sampler}_vs_od_same_n": ratio(runs[f"daskopt {n_baseline} trials"]["trials_per_s"], od),
                    f"{sampler}_vs_dask_storage": ratio(ours, ds),
                    f"{sampler}_prune_rtt_ms": runs["daskopt"]["prune_rtt_ms_median"],
                }
            )
            if sampler == "random":
                raw = runs["raw Dask"]
                fields["raw_dask_tasks_per_s"] = raw["all_at_once_tasks_per_s"]
                fields["raw_dask_rolling_tasks_per_s"] = raw["rolling_tasks_per_s"]
                fields["random_vs_raw_dask"] = ratio(ours, raw["all_at_once_tasks_per_s"])
    fields["target_10x_od"] = fields["random_vs_od"] >= 10
    fields["target_half_raw_dask"] = fields["random_vs_raw_dask"] >= 0.5
    fields["repeats"] = repeats
    return fields
