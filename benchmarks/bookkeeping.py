"""bookkeeping: Ray Tune's bookkeeping-overhead release test, scaled to 2 cores.

2,000 trials (``--quick``: 200) that each make three define-by-run suggestions and sleep 0.25 s, on 16
slots (a ``LocalCluster`` of 2 workers × 8 threads), random sampler, then TPE. The theoretical minimum is
``n × 0.25 / 16`` s (31.25 s at 2,000); the overhead is the wall time above it. Ray publishes 14% for its
own test. Baselines on the same cluster: optuna-distributed 0.7, Optuna on ``DaskStorage`` (16
``optimize`` calls), and plain Optuna in this process with ``n_jobs=16`` threads. daskopt also runs with
the three parameters declared (``search_space=``: sampled at ask time, no round trip per suggestion).

Each trial records where and when its sleep ran, so ``idle`` (the share of each slot's time spent between
its trials, waiting for a trial or a suggestion) shows whether the sampler stalls slots. Where the sampler
runs in this process (daskopt, n_jobs, optuna-distributed) its calls are timed: ``sampler_pct`` is the
sampler's busy time over the wall time; near 100% the sampler, not the engine, sets the pace (TPE needs
~10-20 ms per trial at 1,000-2,000 trials, while 16 slots of 0.25 s consume a trial every 15.6 ms).

Target: overhead ≤ 3%, with either sampler.
"""

from __future__ import annotations

import functools
from typing import Any

import optuna

from benchmarks.baselines import make_sampler
from benchmarks.common import (
    Settings,
    dask_cluster,
    interleaved,
    medians,
    run_dask_storage,
    run_daskopt,
    run_n_jobs,
    run_optuna_distributed,
    slot_idle,
    slots,
    spans_from_study,
)
from benchmarks.objectives import SPACE, TimedSampler, sleep_objective

NAME = "bookkeeping"
DESCRIPTION = "Ray Tune's release test scaled: 0.25 s trials on 16 slots, overhead over the theoretical minimum"
SLEEP_S = 0.25
SAMPLERS = ("random", "tpe")


def outcome(study: optuna.Study, wall_s: float, n_slots: int) -> dict[str, Any]:
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    minimum = len(finished) * SLEEP_S / n_slots
    idle = slot_idle(spans_from_study(study))
    sampler = study.sampler
    sampler_pct = 100.0 * sampler.seconds / wall_s if isinstance(sampler, TimedSampler) else float("nan")
    return {
        "overhead_pct": 100.0 * (wall_s / minimum - 1.0) if minimum else float("nan"),
        "sampler_pct": sampler_pct,
        "idle_pct": 100.0 * idle["idle_frac"],
        "gap_ms_median": idle["gap_ms_median"],
        "gap_ms_p99": idle["gap_ms_p99"],
        "wall_s": wall_s,
        "minimum_s": minimum,
        "n_finished": len(finished),
    }


def run(settings: Settings) -> dict[str, Any]:
    n_trials = settings.pick(smoke=16, quick=200, full=2000)
    repeats = settings.reps(smoke=1, quick=1, full=2)
    objective = functools.partial(sleep_objective, sleep_s=SLEEP_S)
    fields: dict[str, Any] = {}
    with dask_cluster(2, 8) as client:
        n_slots = slots(client)
        run_daskopt(client, optuna.create_study(), objective, n_trials=n_slots)  # warm-up
        for sampler in SAMPLERS:
            print(
                f" sampler={sampler}: {n_trials} trials × {SLEEP_S} s on {n_slots} slots, "
                f"minimum {n_trials * SLEEP_S / n_slots:.2f} s",
                flush=True,
            )

            def ours(s: str = sampler) -> dict[str, Any]:
                study = optuna.create_study(sampler=TimedSampler(make_sampler(s)))
                return outcome(study, run_daskopt(client, study, objective, n_trials=n_trials), n_slots)

            def ours_declared(s: str = sampler) -> dict[str, Any]:
                study = optuna.create_study(sampler=TimedSampler(make_sampler(s)))
                wall = run_daskopt(client, study, objective, n_trials=n_trials, search_space=SPACE)
                return outcome(study, wall, n_slots)

            def optuna_distributed(s: str = sampler) -> dict[str, Any]:
                study = optuna.create_study(sampler=TimedSampler(make_sampler(s)))
                return outcome(study, run_optuna_distributed(client, study, objective, n_trials), n_slots)

            def dask_storage(s: str = sampler) -> dict[str, Any]:
                study, wall = run_dask_storage(client, objective, n_trials, sampler=make_sampler(s))
                return outcome(study, wall, n_slots)

            def n_jobs(s: str = sampler) -> dict[str, Any]:
                study = optuna.create_study(sampler=TimedSampler(make_sampler(s)))
                return outcome(study, run_n_jobs(study, objective, n_trials, n_slots), n_slots)

            runs = interleaved(
                repeats,
                {
                    "daskopt": ours,
                    "daskopt search_space": ours_declared,
                    "optuna-distributed": optuna_distributed,
                    "DaskStorage": dask_storage,
                    f"optuna n_jobs={n_slots}": n_jobs,
                },
            )
            m = {name: medians(results) for name, results in runs.items()}
            fields.update(
                {
                    f"{sampler}_overhead_pct": m["daskopt"]["overhead_pct"],
                    f"{sampler}_idle_pct": m["daskopt"]["idle_pct"],
                    f"{sampler}_sampler_pct": m["daskopt"]["sampler_pct"],
                    f"{sampler}_declared_overhead_pct": m["daskopt search_space"]["overhead_pct"],
                    f"{sampler}_n_jobs_sampler_pct": m[f"optuna n_jobs={n_slots}"]["sampler_pct"],
                    f"{sampler}_od_overhead_pct": m["optuna-distributed"]["overhead_pct"],
                    f"{sampler}_dask_storage_overhead_pct": m["DaskStorage"]["overhead_pct"],
                    f"{sampler}_n_jobs_overhead_pct": m[f"optuna n_jobs={n_slots}"]["overhead_pct"],
                }
            )
    fields["minimum_s"] = n_trials * SLEEP_S / n_slots
    fields["target_3pct"] = max(fields["random_overhead_pct"], fields["tpe_overhead_pct"]) <= 3.0
    fields["n_trials"] = n_trials
    fields["repeats"] = repeats
    return fields


def daskopt_only(n_trials: int = 2000, samplers: tuple[str, ...] = SAMPLERS) -> None:
    """daskopt's two rows alone (define-by-run and declared space), for checking an engine change quickly:
    ``python -m benchmarks.bookkeeping`` (3 min for both samplers; the full benchmark with baselines: 18)."""
    from benchmarks.common import quiet

    quiet()
    objective = functools.partial(sleep_objective, sleep_s=SLEEP_S)
    with dask_cluster(2, 8) as client:
        n_slots = slots(client)
        run_daskopt(client, optuna.create_study(), objective, n_trials=n_slots)  # warm-up
        for sampler in samplers:
            for declared in (False, True):
                study = optuna.create_study(sampler=TimedSampler(make_sampler(sampler)))
                options = {"search_space": SPACE} if declared else {}
                result = outcome(study, run_daskopt(client, study, objective, n_trials=n_trials, **options), n_slots)
                shown = " ".join(f"{key}={value:.3g}" for key, value in result.items())
                print(f"daskopt {sampler} {'declared' if declared else 'define-by-run'}: {shown}", flush=True)


if __name__ == "__main__":
    daskopt_only()
