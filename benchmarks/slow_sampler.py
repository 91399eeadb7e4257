"""slow_sampler: with a sampler whose asks are slow, how much slot time goes to waiting for a suggestion?

8 slots (2 workers × 4 threads), trials of three define-by-run suggestions and 0.2 s of work, past 300
trials: every study starts with 300 completed trials (random points, true values) added to its storage, so
the sampler already works at its 300-trial cost from the first new trial, in every mode. Two samplers:

- ``gp``: Optuna's ``GPSampler`` (needs torch; skipped without it). On 2 cores one ask at 300 trials costs
  0.1-1.7 s, far more than the 25 ms per ask that 8 slots of 0.2 s trials consume (40 asks/s): no engine
  that asks one trial at a time can keep the slots busy. Reported beside the measured idle: the
  *sampler-bound floor* ``1 - trial_s / (ask_s × slots)`` from the mean ask time measured in the run.
- ``slow``: :class:`benchmarks.objectives.SlowSampler`, TPE plus a CPU-bound busy loop of 30 µs ×
  completed trials per ask (9 ms at 300 trials, 15 ms at 500; with TPE's own cost ~80% of the 25 ms
  budget at the end). Here a sampler working ahead could keep all slots busy: the question is whether the
  engine hides the latency of each ask from the slots.

Idle = the gaps between consecutive trials on each slot (a Dask worker thread or a thread of this process),
from the trials' own timestamps (taken after the suggestions, so waiting for a define-by-run suggestion is
idle too), over the slot's time, for the new trials only. daskopt also runs with the parameters declared
(``search_space=``: no round trip per suggestion). Baselines: plain Optuna with ``n_jobs=8``
threads, Optuna on ``DaskStorage`` (8 ``optimize`` calls, each with its own sampler copy on its worker),
optuna-distributed (asks every trial before any runs: it never waits for ``ask``, but its sampler never
sees a result of this run; and it re-creates the ``optuna.Trial`` for every suggest message, so a
relative sampler recomputes per message).

Target: idle < 10%.
"""

from __future__ import annotations

import functools
import importlib.util
import random
from typing import Any

import optuna

from benchmarks.common import (
    Settings,
    dask_cluster,
    interleaved,
    medians,
    run_daskopt,
    run_n_jobs,
    run_optuna_distributed,
    slot_idle,
    slots,
    spans_from_study,
)
from benchmarks.objectives import SPACE, SlowSampler, TimedSampler, sleep_objective

NAME = "slow_sampler"
DESCRIPTION = "share of slot time idle waiting for a slow sampler (GP; a GP-like stand-in), 8 slots of 0.2 s trials"
TRIAL_S = 0.2
N_CONCURRENT = 8
SLOW_US_PER_TRIAL = 30.0


def make_sampler(kind: str) -> TimedSampler:
    if kind == "gp":
        return TimedSampler(optuna.samplers.GPSampler(seed=0))
    return TimedSampler(SlowSampler(optuna.samplers.TPESampler(seed=0), SLOW_US_PER_TRIAL * 1e-6))


def prefill(study: optuna.Study, n: int) -> None:
    """Add ``n`` completed trials at random points with their true objective values."""
    rng = random.Random(0)
    trials = []
    for _ in range(n):
        params: dict[str, Any] = {"x": rng.uniform(-10.0, 10.0), "y": rng.randint(0, 10), "c": rng.choice("abc")}
        trials.append(
            optuna.trial.create_trial(params=params, distributions=SPACE, value=params["x"] ** 2 + params["y"])
        )
    study.add_trials(trials)


def outcome(study: optuna.Study, wall_s: float, n_slots: int, first_new: int) -> dict[str, Any]:
    idle = slot_idle(spans_from_study(study), from_number=first_new)
    new = [t for t in study.get_trials(deepcopy=False) if t.number >= first_new and t.state.is_finished()]
    result = {
        "idle_pct": 100.0 * idle["idle_frac"],
        "gap_ms_median": idle["gap_ms_median"],
        "gap_ms_p99": idle["gap_ms_p99"],
        "overhead_pct": 100.0 * (wall_s / (len(new) * TRIAL_S / n_slots) - 1.0) if new else float("nan"),
        "wall_s": wall_s,
        "n_new": len(new),
    }
    sampler = study.sampler
    if isinstance(sampler, TimedSampler) and sampler.asks:
        ask_s = sampler.seconds / sampler.asks
        result["ask_ms"] = ask_s * 1e3
        result["floor_pct"] = 100.0 * max(0.0, 1.0 - TRIAL_S / (ask_s * n_slots))
    return result


def run(settings: Settings) -> dict[str, Any]:
    n_prefill = settings.pick(smoke=20, quick=300, full=300)
    sizes = {"slow": settings.pick(smoke=16, quick=80, full=200), "gp": settings.pick(smoke=4, quick=16, full=48)}
    kinds = ["slow"] + (["gp"] if importlib.util.find_spec("torch") is not None else [])
    objective = functools.partial(sleep_objective, sleep_s=TRIAL_S)
    fields: dict[str, Any] = {}

    with dask_cluster(2, 4) as client:
        n_slots = slots(client)
        run_daskopt(client, optuna.create_study(), objective, n_trials=N_CONCURRENT)  # warm-up
        for kind in kinds:
            n_new = sizes[kind]
            repeats = settings.reps(smoke=1, quick=1, full=2 if kind == "gp" else 3)
            print(f" sampler={kind}: {n_prefill} trials stored, then {n_new} new trials × {TRIAL_S} s", flush=True)

            def fresh(k: str = kind) -> optuna.Study:
                study = optuna.create_study(sampler=make_sampler(k))
                prefill(study, n_prefill)
                return study

            def ours(k: str = kind, n: int = n_new) -> dict[str, Any]:
                study = fresh(k)
                wall = run_daskopt(client, study, objective, n_trials=n, n_concurrent=N_CONCURRENT)
                return outcome(study, wall, n_slots, n_prefill)

            def ours_declared(k: str = kind, n: int = n_new) -> dict[str, Any]:
                study = fresh(k)
                wall = run_daskopt(client, study, objective, n_trials=n, n_concurrent=N_CONCURRENT, search_space=SPACE)
                return outcome(study, wall, n_slots, n_prefill)

            def n_jobs(k: str = kind, n: int = n_new) -> dict[str, Any]:
                study = fresh(k)
                return outcome(study, run_n_jobs(study, objective, n, N_CONCURRENT), n_slots, n_prefill)

            def dask_storage(k: str = kind, n: int = n_new) -> dict[str, Any]:
                from benchmarks.baselines import dask_storage_study
                from benchmarks.baselines import run_dask_storage as optimize_on_dask

                study = dask_storage_study(client, sampler=make_sampler(k).base)
                prefill(study, n_prefill)
                return outcome(study, optimize_on_dask(client, study, objective, n), n_slots, n_prefill)

            def optuna_distributed(k: str = kind, n: int = n_new) -> dict[str, Any]:
                study = fresh(k)
                return outcome(study, run_optuna_distributed(client, study, objective, n), n_slots, n_prefill)

            runners = {
                "daskopt": ours,
                "daskopt search_space": ours_declared,
                f"optuna n_jobs={N_CONCURRENT}": n_jobs,
                "DaskStorage": dask_storage,
                "optuna-distributed": optuna_distributed,
            }
            if kind == "gp":  # a declared space changes nothing when each ask takes ~0.5 s
                del runners["daskopt search_space"]
            if kind == "gp" and settings.mode != "full":  # ... and the baselines would cost minutes
                del runners["DaskStorage"], runners["optuna-distributed"]
            runs = interleaved(repeats, runners)
            m = {name: medians(results) for name, results in runs.items()}
            fields.update(
                {
                    f"{kind}_idle_pct": m["daskopt"]["idle_pct"],
                    f"{kind}_gap_ms_median": m["daskopt"]["gap_ms_median"],
                    f"{kind}_declared_idle_pct": m.get("daskopt search_space", {}).get("idle_pct", float("nan")),
                    f"{kind}_ask_ms": m["daskopt"].get("ask_ms", float("nan")),
                    f"{kind}_floor_pct": m["daskopt"].get("floor_pct", float("nan")),
                    f"{kind}_n_jobs_idle_pct": m[f"optuna n_jobs={N_CONCURRENT}"]["idle_pct"],
                    f"{kind}_overhead_pct": m["daskopt"]["overhead_pct"],
                    f"{kind}_n_jobs_overhead_pct": m[f"optuna n_jobs={N_CONCURRENT}"]["overhead_pct"],
                }
            )
            if "DaskStorage" in m:
                fields[f"{kind}_dask_storage_idle_pct"] = m["DaskStorage"]["idle_pct"]
                fields[f"{kind}_od_idle_pct"] = m["optuna-distributed"]["idle_pct"]
                fields[f"{kind}_od_overhead_pct"] = m["optuna-distributed"]["overhead_pct"]
    fields["target_idle_10pct"] = fields["slow_idle_pct"] < 10.0
    fields["gp"] = "GPSampler" if "gp" in kinds else "skipped_no_torch"
    fields["prefilled"] = n_prefill
    return fields
