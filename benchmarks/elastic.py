"""elastic: elastic trials against fixed replica counts, on a mixed workload and a fixed pool of slots.

The workload is a study of enqueued trials of two kinds, as an architecture search yields them:

- ``big`` models: compute per example dominates a step and the gradients are noisy (a large noise scale),
  so more replicas and a larger batch pay; they train long;
- ``small`` models: a fixed per-step cost and a costly synchronisation, and quiet gradients, so extra
  replicas barely help; they train short.

A trial's compute is simulated: each step sleeps ``t(g, m) = α + β·m + σ·(g - 1)`` seconds (``g``
replicas, ``m`` examples per replica) and advances the trial's progress by AdaScale's gain at its total
batch ``M`` (1 at the batch ``M0`` it was tuned for; ``(φ/M0 + 1) / (φ/M + 1)`` above it). A trial ends
when its progress reaches its length. Everything else is the real machinery: the trial's replicas are
gloo processes (``integrations.torch.launch``, a barrier every step), each step is checkpointed and
reported, the allocator in the loop decides from what ``trial.profile`` tells it, resizes are restarts.

Compared in the same run, on one worker offering ``GPU_SLOT = slots``: elastic trials; every trial on 1
slot (``gpus_per_trial = 1``, ``slots`` at once); every trial on ``g`` slots for ``g`` in 2 and 4 (with the
tuned batch ``M0``). The best fixed allocation is the one with the lowest mean completion time. Then the
elastic study again on ``slots`` workers of one slot each (a dask-cuda cluster's shape: one worker per
GPU), where a trial with several replicas spans workers (``daskopt/elastic/parts.py``): ``spread_*``,
after one short trial on each worker (each starts its launch zygote once, as the one-worker arm's did).
Completion time counts from the start of the study (every trial is submitted then; one that waits for a
slot waits in it). ``RESULT elastic mean_jct_gain=<1 - elastic / best fixed> makespan_gain=<...>``;
target ``mean_jct_gain >= 0.25``.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from distributed import Client, LocalCluster

from benchmarks.common import Settings, quiet, run_daskopt

NAME = "elastic"
DESCRIPTION = "elastic trials vs 1 slot per trial vs the best fixed slots per trial (mean completion time)"
M0 = 64  # the total batch every trial was tuned at
MAX_PER_REPLICA = 128
# kind -> (alpha s, beta s per example, sigma s per extra replica, noise scale phi)
KINDS = {"big": (0.05, 0.006, 0.02, 2000.0), "small": (0.15, 0.002, 0.15, 200.0)}


def step_seconds(kind: str, replicas: int, batch: int, scale: float) -> float:
    alpha, beta, sigma, _ = KINDS[kind]
    return scale * (alpha + beta * batch / replicas + sigma * (replicas - 1))


def progress_per_step(kind: str, batch: int) -> float:
    phi = KINDS[kind][3]
    return (phi / M0 + 1) / (phi / batch + 1)


def replica(rank: int, kind: str, length: float, scale: float) -> float:
    """One replica of a trial: sleeps its simulated step, meets the others, checkpoints, profiles, reports."""
    import torch.distributed as dist

    from daskopt.integrations.torch import launched_trial

    trial = launched_trial()
    replicas = trial.world_size
    batch = trial.elastic.batch_size if trial.elastic is not None else M0
    state = trial.load_checkpoint() or {"progress": 0.0}
    step = 0 if trial.resume_step is None else trial.resume_step + 1
    gain = progress_per_step(kind, batch)
    seconds = step_seconds(kind, replicas, batch, scale)
    while state["progress"] < length:
        time.sleep(seconds)
        dist.barrier()
        state["progress"] += gain
        trial.save_checkpoint(state, step)
        left = math.ceil(max(0.0, length - state["progress"]) / gain)
        trial.profile(seconds, batch=batch, noise_scale=KINDS[kind][3], remaining_steps=left)
        trial.report(state["progress"], step)
        step += 1
    return float(state["progress"])


def objective(trial: Any, scale: float) -> float:
    from daskopt.integrations.torch import launch

    kind = trial.suggest_categorical("kind", list(KINDS))
    length = trial.suggest_float("length", 1.0, 1000.0)
    return float(launch(replica, args=(kind, length, scale), trial=trial))


def workload(n: int) -> list[dict[str, Any]]:
    """``n`` trials, big and small alternating, lengths cycling (progress in steps at the tuned batch)."""
    big, small = (100.0, 200.0, 300.0, 150.0), (60.0, 30.0, 90.0, 45.0)
    return [
        {"kind": "big", "length": big[(i // 2) % 4]} if i % 2 == 0 else {"kind": "small", "length": small[(i // 2) % 4]}
        for i in range(n)
    ]


@contextmanager
def slot_cluster(slots: int, workers: int = 1) -> Iterator[Client]:
    """``workers`` workers sharing ``slots`` replica slots evenly, each with a thread for each trial (or part
    of one) it may run."""
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=slots // workers,
            resources={"GPU_SLOT": slots // workers},
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(quiet)
        yield client


def run_study(client: Client, points: list[dict[str, Any]], scale: float, slots: int, replicas: int | None) -> dict:
    """One study of ``points``: elastic (``replicas=None``) or every trial on ``replicas`` slots."""
    import functools

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    for point in points:
        study.enqueue_trial(point)
    options: dict[str, Any]
    if replicas is None:
        options = {
            "elastic": {
                "min_replicas": 1,
                "max_replicas": slots,
                "initial_batch": M0,
                "max_per_replica_batch": MAX_PER_REPLICA,
                "lr_rule": "adascale",
                "min_interval_s": 0.0,
            }
        }
    else:
        options = {"resources": {"gpus_per_trial": replicas}, "n_concurrent": slots // replicas}
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.time()
        wall = run_daskopt(
            client,
            study,
            functools.partial(objective, scale=scale),
            n_trials=len(points),
            tracking={"checkpoint_dir": folder},
            catch=(),
            **options,
        )
    trials = study.trials
    assert all(t.state.name == "COMPLETE" for t in trials), [t.user_attrs.get("fail_reason") for t in trials]
    done = [t.datetime_complete.timestamp() - t0 for t in trials if t.datetime_complete is not None]
    resizes = sum(max(0, len(t.user_attrs.get("replicas", [])) - 1) for t in trials)
    if os.environ.get("DASKOPT_BENCH_TRACE"):
        for t in trials:
            end = t.datetime_complete.timestamp() - t0 if t.datetime_complete else float("nan")
            print(f"    trial {t.number} {t.params} done {end:.1f}s replicas {t.user_attrs.get('replicas')}")
    return {"mean_jct_s": statistics.fmean(done), "makespan_s": max(done), "wall_s": wall, "resizes": resizes}


def against_best_fixed(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``elastic`` arm against the fixed arm of the lowest mean completion time (and the lowest makespan)."""
    fixed = {name: r for name, r in results.items() if name != "elastic"}
    best = min(fixed, key=lambda name: fixed[name]["mean_jct_s"])
    elastic = results["elastic"]
    return {
        "mean_jct_gain": 1 - elastic["mean_jct_s"] / fixed[best]["mean_jct_s"],
        "makespan_gain": 1 - elastic["makespan_s"] / min(r["makespan_s"] for r in fixed.values()),
        "elastic_mean_jct_s": elastic["mean_jct_s"],
        "best_fixed": best,
        "best_fixed_mean_jct_s": fixed[best]["mean_jct_s"],
    }


def run(settings: Settings) -> dict[str, Any]:
    slots = settings.pick(smoke=2, quick=8, full=8)
    n = settings.pick(smoke=2, quick=8, full=8)
    scale = settings.pick(smoke=0.1, quick=0.5, full=1.0)  # time scale of the simulated steps
    fixed_sizes = settings.pick(smoke=(1,), quick=(1, 2, 4), full=(1, 2, 4))
    points = workload(n)
    results: dict[str, dict[str, float]] = {}
    with slot_cluster(slots) as client:
        run_study(client, [{"kind": "small", "length": 2.0}], scale, slots, 1)  # warm-up: imports, shipping
        for name, replicas in [("elastic", None), *((f"fixed_{g}", g) for g in fixed_sizes)]:
            results[name] = run_study(client, points, scale, slots, replicas)
            fields = " ".join(f"{key}={value:.1f}" for key, value in results[name].items())
            print(f"  {name}: {fields}", flush=True)
    with slot_cluster(slots, workers=slots) as client:
        # warm-up as above, on every worker: each starts its launch zygote (torch imported) once
        run_study(client, [{"kind": "small", "length": 2.0}] * slots, scale, slots, 1)
        spread = run_study(client, points, scale, slots, None)
        print("  elastic, one slot per worker: " + " ".join(f"{k}={v:.1f}" for k, v in spread.items()), flush=True)
    return {
        **against_best_fixed(results),
        "one_slot_mean_jct_s": results["fixed_1"]["mean_jct_s"],
        "elastic_makespan_s": results["elastic"]["makespan_s"],
        "spread_mean_jct_s": spread["mean_jct_s"],
        "spread_vs_one_worker": spread["mean_jct_s"] / results["elastic"]["mean_jct_s"],
        "spread_resizes": spread["resizes"],
        "resizes": results["elastic"]["resizes"],
        "slots": slots,
        "trials": n,
    }
