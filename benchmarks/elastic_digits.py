"""elastic_digits: the digits CNN of ``examples/elastic_digits`` with real gloo replicas, elastic against
fixed replica counts.

Nothing is simulated here (``benchmarks/elastic.py`` simulates step times to test the allocator on known
scaling curves): each trial trains the example's CNN (``WIDTH`` channels, ``EPOCHS`` epochs of the 1,347
training digits, a checkpoint and a report every ``REPORT_EVERY`` steps) on as many gloo ranks as it is
given, each rank on one CPU thread. The study: ``N_TRIALS`` enqueued trials (the same learning rates and
momenta in every arm) on one worker offering ``SLOTS`` replica slots. Arms, in the same run, on the same
cluster:

- ``elastic``: the example's ``[elastic]`` settings (1 to ``SLOTS`` replicas, batch 64 to 256, AdaScale);
- ``fixed_g``: every trial held at ``g`` ranks and the tuned batch of 64 (``[elastic]`` with ``min_replicas =
  max_replicas = g``, ``max_batch = 64``; ``SLOTS / g`` at once), g in 1, 2.

Measured per arm: each trial's completion time from the study's start (mean and the last: makespan), its
final validation accuracy, the resizes, and a figure (``benchmarks/elastic_digits.png``): trials finished
against time. ``RESULT elastic_digits mean_jct_gain=<1 - elastic / best fixed> makespan_gain=<...>``.

What to expect depends on the cores: a rank is a CPU-bound process, so on a machine with fewer cores than
slots more ranks per trial cannot train faster, and the allocator should measure that and keep (or bring
back) one rank per trial; with a core (or a GPU) per slot, a trial that grows into freed slots finishes
sooner. ``--quick``: 1-2 epochs; ``--smoke``: 1 epoch, 2 trials on 2 slots, elastic and ``fixed_1`` only.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from typing import Any

import optuna

from benchmarks.common import ROOT, Settings, run_daskopt
from benchmarks.elastic import against_best_fixed, slot_cluster

NAME = "elastic_digits"
DESCRIPTION = "the digits CNN on real gloo replicas: elastic vs fixed replicas per trial (completion time)"
EXAMPLE = ROOT / "examples" / "elastic_digits"
SLOTS = 4
N_TRIALS = 4
ARMS: list[tuple[str, int | None]] = [("elastic", None), ("fixed_1", 1), ("fixed_2", 2)]
POINTS = [  # (lr, momentum), one per trial; lengths differ through the epochs below
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.1, "momentum": 0.5},
    {"lr": 0.2, "momentum": 0.0},
    {"lr": 0.03, "momentum": 0.8},
]


def example() -> Any:
    """The example's module, shipped to workers by value."""
    import cloudpickle

    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    import elastic_digits

    cloudpickle.register_pickle_by_value(elastic_digits)
    return elastic_digits


def objective_for(epochs: list[int]) -> Any:
    """The example's objective, with trial ``i`` training ``epochs[i % len(epochs)]`` epochs (so trials end
    at different times and freed slots exist to grow into)."""
    module = example()

    def objective(trial: optuna.trial.BaseTrial) -> float:
        from daskopt.integrations.torch import launch

        lr = trial.suggest_float("lr", 0.01, 0.5, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.95)
        length = epochs[trial.number % len(epochs)]
        return float(launch(module.train, args=(lr, momentum, length, module.arrays()), trial=trial))

    return objective


def run_arm(client: Any, slots: int, points: list[dict[str, float]], epochs: list[int], replicas: int | None) -> dict:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    for point in points:
        study.enqueue_trial(point)
    elastic: dict[str, Any] = {"initial_batch": 64, "max_per_replica_batch": 128, "lr_rule": "adascale"}
    if replicas is None:  # the example's settings
        elastic |= {"min_replicas": 1, "max_replicas": slots, "max_batch": 256, "restart_s": 1.0, "min_interval_s": 5.0}
    else:  # held at g ranks and the tuned batch: a fixed allocation (the example's ranks expect a placement)
        elastic |= {"min_replicas": replicas, "max_replicas": replicas, "max_batch": 64}
    options: dict[str, Any] = {"elastic": elastic}
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.time()
        wall = run_daskopt(
            client,
            study,
            objective_for(epochs),
            n_trials=len(points),
            tracking={"checkpoint_dir": folder},
            catch=(),
            **options,
        )
    trials = study.trials
    assert all(t.state.name == "COMPLETE" for t in trials), [t.user_attrs.get("fail_reason") for t in trials]
    done = sorted(t.datetime_complete.timestamp() - t0 for t in trials if t.datetime_complete is not None)
    return {
        "mean_jct_s": statistics.fmean(done),
        "makespan_s": max(done),
        "wall_s": wall,
        "accuracy": statistics.fmean(float(t.value) for t in trials if t.value is not None),
        "resizes": sum(max(0, len(t.user_attrs.get("replicas", [])) - 1) for t in trials),
        "replicas": [t.user_attrs.get("replicas") for t in trials],
        "done": done,
    }


def figure(results: dict[str, dict[str, Any]], path: str) -> str | None:
    """Trials finished against time, one line per arm; the path written, or ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, result in results.items():
        times = [0.0, *result["done"]]
        ax.step(times, range(len(times)), where="post", label=f"{name} (mean {result['mean_jct_s']:.1f} s)")
    ax.set_xlabel("seconds since the study started")
    ax.set_ylabel("trials finished")
    ax.set_title(f"digits CNN, gloo ranks on {os.cpu_count()} cores, {SLOTS} replica slots")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(settings: Settings) -> dict[str, Any]:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("  elastic_digits: needs the torch extra; skipped", flush=True)
        return {"skipped": "no torch"}
    slots = settings.pick(smoke=2, quick=SLOTS, full=SLOTS)
    points = POINTS[: settings.pick(smoke=2, quick=N_TRIALS, full=N_TRIALS)]
    epochs = settings.pick(smoke=[1], quick=[1, 2], full=[2, 4, 6, 8])
    results: dict[str, dict[str, Any]] = {}
    arms = settings.pick(smoke=[("elastic", None), ("fixed_1", 1)], quick=ARMS, full=ARMS)
    with slot_cluster(slots) as client:
        if settings.mode != "smoke":
            run_arm(client, slots, points[:1], [1], 1)  # warm-up: imports, the zygote, shipping
        for name, replicas in arms:
            results[name] = run_arm(client, slots, points, epochs, replicas)
            shown = {k: v for k, v in results[name].items() if k != "done"}
            print(f"  {name}: {shown}", flush=True)
    written = None if settings.mode == "smoke" else figure(results, str(ROOT / "benchmarks" / "elastic_digits.png"))
    summary = against_best_fixed(results)
    return {
        **summary,
        "elastic_accuracy": results["elastic"]["accuracy"],
        "best_fixed_accuracy": results[summary["best_fixed"]]["accuracy"],
        "resizes": results["elastic"]["resizes"],
        "cores": os.cpu_count(),
        "slots": slots,
        "trials": len(points),
        "figure": os.path.relpath(written, ROOT) if written else "none",
    }
