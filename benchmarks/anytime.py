"""anytime: search quality per wall-clock second on a multi-fidelity synthetic problem.

The problem (:func:`benchmarks.objectives.learning_curve`): Hartmann-6 in its multi-fidelity form, reached
along a learning curve (an offset decaying with a configuration-dependent time constant) plus Gaussian noise
(σ = 0.05); an epoch
costs a sleep (40 ms; 27 epochs, so an unpruned trial takes ~1.1 s). 8 slots, a fixed wall-clock budget,
several seeds. Engines and settings:

- ``daskopt_asha``: daskopt, TPE + ``SuccessiveHalvingPruner`` (ASHA; min resource 1, reduction factor 3);
- ``daskopt_tpe``: daskopt, TPE without pruning;
  (daskopt is given the six parameters as ``search_space=``, as Ray is: with define-by-run suggestions a
  trial that waits for one when the budget ends is never answered and daskopt restarts its worker, which
  on a loaded 2-core machine can take longer than the benchmark waits; see RESULTS.md)
- ``optuna_distributed``: optuna-distributed 0.7, TPE + the same pruner, Dask mode (it asks all of its
  trials before running any, so TPE never sees a result within the run);
- ``ray``: Ray Tune (``ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3)`` + ``OptunaSearch`` with
  TPE), 8 concurrent trials on a local Ray instance (Ray cannot run on the Dask cluster), if Ray installs.

Time is measured from the call (``optimize``/``Tuner.fit``) with the cluster already running. The
recommendation at time t is the trial with the best final value (all 27 epochs) finished by t; its simple
regret is its true, noise-free value minus the optimum (3.32237 when nothing has finished). Reported:
the median over seeds of the regret at the budget and of the time to reach ``regret <= 0.3`` (about the
best of 2,000 random points); ``benchmarks/anytime.png`` plots the median regret against time (``--smoke``
writes it to the temp folder). Ray also runs 15 s (``--quick``: 10 s) past the budget, to give its regret
at the budget counted from its first trial's start (Ray starts its trial actors first).

Budgets: 40 s and 5 seeds (``--quick``: 10 s, 2 seeds, Ray 1 seed).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from benchmarks.common import ROOT, Settings, dask_cluster, run_daskopt, run_optuna_distributed
from benchmarks.objectives import HARTMANN_MIN, PARAMS, SPAN_ATTR, anytime_objective, learning_curve, regret

NAME = "anytime"
DESCRIPTION = "regret vs wall clock on multi-fidelity Hartmann-6: daskopt TPE+ASHA vs TPE, optuna-distributed, Ray"
N_CONCURRENT = 8
NOISE = 0.05
THRESHOLD = 0.3
NO_RECOMMENDATION = -HARTMANN_MIN  # regret when no trial has finished all its epochs
RAY_EXTRA_S = 15.0
SPACE: dict[str, optuna.distributions.BaseDistribution] = {
    name: optuna.distributions.FloatDistribution(0.0, 1.0) for name in PARAMS
}


@dataclass
class Trace:
    """One run: the finished full-fidelity trials as (seconds since the call, observed value, regret)."""

    points: list[tuple[float, float, float]] = field(default_factory=list)
    started: int = 0
    startup_s: float = math.nan  # call start to the first trial's start
    wall_s: float = math.nan  # the whole call, stopping included

    def regret_at(self, t: float, offset: float = 0.0) -> float:
        best_value, best_regret = math.inf, NO_RECOMMENDATION
        for when, value, true_regret in sorted(self.points):
            if when - offset > t:
                break
            if value < best_value:
                best_value, best_regret = value, true_regret
        return best_regret

    def time_to(self, threshold: float) -> float:
        best_value = math.inf
        for when, value, true_regret in sorted(self.points):
            if value < best_value:
                best_value = value
                if true_regret <= threshold:
                    return when
        return math.inf


def _trace_from_study(study: optuna.Study, call_start: float, wall_s: float) -> Trace:
    trace = Trace(wall_s=wall_s)
    starts = []
    for trial in study.get_trials(deepcopy=False):
        span = trial.user_attrs.get(SPAN_ATTR)
        if not span:
            continue  # never ran (optuna-distributed asks every trial up front)
        trace.started += 1
        starts.append(span[1])
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            x = [trial.params[name] for name in PARAMS]
            trace.points.append((span[2] - call_start, trial.value, regret(x)))
    trace.startup_s = min(starts) - call_start if starts else math.nan
    return trace


def _study(seed: int, asha: bool) -> optuna.Study:
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
        if asha
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)


# ------------------------------------------------------------------------------------------------ Ray
def ray_available() -> bool:
    try:
        import ray  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError:
        return False
    return True


def ray_trainable(config: dict[str, float], n_epochs: int, epoch_s: float, noise: float) -> None:
    """The same training run for Ray Tune: one ``tune.report`` per epoch."""
    from ray import tune

    start = time.time()
    x = [config[name] for name in PARAMS]
    for epoch in range(1, n_epochs + 1):
        time.sleep(epoch_s)
        value = learning_curve(x, epoch, n_epochs, noise)
        tune.report({"value": value, "epoch": epoch, "t_start": start, "t": time.time()})


@contextlib.contextmanager
def ray_session(n_cpus: int) -> Any:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    import ray

    ray.init(num_cpus=n_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def run_ray(seed: int, budget_s: float, n_epochs: int, epoch_s: float, n_slots: int, extra_s: float) -> Trace:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    search = OptunaSearch(
        space=dict(SPACE), metric="value", mode="min", sampler=optuna.samplers.TPESampler(seed=seed), seed=seed
    )
    scheduler = ASHAScheduler(time_attr="epoch", max_t=n_epochs, grace_period=1, reduction_factor=3)
    trainable = functools.partial(ray_trainable, n_epochs=n_epochs, epoch_s=epoch_s, noise=NOISE)
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(
                metric="value",
                mode="min",
                search_alg=search,
                scheduler=scheduler,
                num_samples=-1,
                max_concurrent_trials=n_slots,
                time_budget_s=budget_s + extra_s,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        call_start = time.time()
        results = tuner.fit()
    trace = Trace(wall_s=time.time() - call_start)
    starts = []
    for index in range(len(results)):
        result = results[index]
        metrics = result.metrics or {}
        if "t_start" not in metrics:
            continue
        trace.started += 1
        starts.append(metrics["t_start"])
        if metrics.get("epoch") == n_epochs:
            x = [(result.config or {})[name] for name in PARAMS]
            trace.points.append((metrics["t"] - call_start, float(metrics["value"]), regret(x)))
    trace.startup_s = min(starts) - call_start if starts else math.nan
    return trace


# ------------------------------------------------------------------------------------------ the runs
def run(settings: Settings) -> dict[str, Any]:
    budget_s, n_epochs, epoch_s = settings.pick(smoke=(1.5, 9, 0.01), quick=(10.0, 27, 0.04), full=(40.0, 27, 0.04))
    seeds = list(range(settings.reps(smoke=1, quick=2, full=5)))
    objective = functools.partial(anytime_objective, n_epochs=n_epochs, epoch_s=epoch_s, noise=NOISE)
    print(f" budget {budget_s:g} s, {n_epochs} epochs × {epoch_s * 1e3:.0f} ms, seeds {seeds}", flush=True)
    traces: dict[str, list[Trace]] = {}

    def record(method: str, trace: Trace) -> None:
        traces.setdefault(method, []).append(trace)
        print(
            f"  {method} seed {len(traces[method]) - 1}: regret {trace.regret_at(budget_s):.3f} at {budget_s:g} s, "
            f"{trace.started} trials started, {len(trace.points)} finished all epochs, "
            f"startup {trace.startup_s:.2f} s, call {trace.wall_s:.1f} s",
            flush=True,
        )

    with dask_cluster(2, 4) as client:
        n_workers = len(client.scheduler_info()["workers"])
        run_daskopt(client, _study(0, True), objective, n_trials=N_CONCURRENT)  # warm-up
        # optuna-distributed needs n_trials up front and asks them all before running any.
        od_trials = int(budget_s * N_CONCURRENT / (epoch_s * 4))
        for seed in seeds:
            for method, asha in (("daskopt_asha", True), ("daskopt_tpe", False)):
                study = _study(seed, asha)
                call_start = time.time()
                wall = run_daskopt(
                    client, study, objective, timeout=budget_s, n_concurrent=N_CONCURRENT, search_space=SPACE
                )
                record(method, _trace_from_study(study, call_start, wall))
                client.wait_for_workers(n_workers, timeout=120)  # in case daskopt restarted a worker at the end
            study = _study(seed, True)
            call_start = time.time()
            wall = run_optuna_distributed(client, study, objective, od_trials, timeout=budget_s)
            record("optuna_distributed", _trace_from_study(study, call_start, wall))
    if ray_available():
        # The smoke run only checks that the Ray path works: 2 actors start much faster than 8.
        ray_slots, extra_s = settings.pick(smoke=(2, 3.0), quick=(N_CONCURRENT, 10.0), full=(N_CONCURRENT, RAY_EXTRA_S))
        with ray_session(ray_slots):
            # Ray spends ~10-18 s starting 8 trial actors on 2 cores: the quick run gives it one seed.
            for seed in seeds[: settings.pick(smoke=1, quick=1, full=len(seeds))]:
                record("ray", run_ray(seed, budget_s, n_epochs, epoch_s, ray_slots, extra_s))

    fields: dict[str, Any] = {}
    for method, runs in traces.items():
        fields[f"{method}_regret"] = statistics.median(t.regret_at(budget_s) for t in runs)
        fields[f"{method}_t_to_{THRESHOLD:g}_s"] = statistics.median(t.time_to(THRESHOLD) for t in runs)
        fields[f"{method}_trials"] = statistics.median(t.started for t in runs)
        fields[f"{method}_startup_s"] = statistics.median(t.startup_s for t in runs)
        fields[f"{method}_call_s"] = statistics.median(t.wall_s for t in runs)
    if "ray" in traces:
        fields["ray_regret_after_startup"] = statistics.median(
            t.regret_at(budget_s, offset=t.startup_s) for t in traces["ray"]
        )
    else:
        fields["ray"] = "not_installed"
    ours, od = fields["daskopt_asha_regret"], fields["optuna_distributed_regret"]
    fields["asha_regret_vs_od"] = ours / od if od else math.nan
    fields["asha_regret_vs_tpe"] = ours / fields["daskopt_tpe_regret"] if fields["daskopt_tpe_regret"] else math.nan
    fields["budget_s"] = budget_s
    fields["seeds"] = len(seeds)
    plot_path = (
        Path(tempfile.gettempdir()) / "anytime-smoke.png"
        if settings.mode == "smoke"
        else ROOT / "benchmarks" / "anytime.png"
    )
    fields["plot"] = plot(traces, budget_s, plot_path, settings.mode)
    return fields


def plot(traces: dict[str, list[Trace]], budget_s: float, path: Path, mode: str) -> str:
    """Median regret over seeds against time, one line per method; returns the path (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib_not_installed"
    grid = [budget_s * i / 400 for i in range(401)]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels: dict[str, str] = {
        "daskopt_asha": "daskopt TPE + ASHA",
        "daskopt_tpe": "daskopt TPE, no pruning",
        "optuna_distributed": "optuna-distributed TPE + ASHA",
        "ray": "Ray Tune ASHA + OptunaSearch(TPE)",
    }
    for method, runs in traces.items():
        curve: list[float] = [statistics.median(t.regret_at(x) for t in runs) for x in grid]
        ax.step(grid, curve, where="post", label=f"{labels.get(method, method)} ({len(runs)} seeds)")
    ax.axhline(THRESHOLD, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock seconds since the call (8 slots, 2 cores)")
    ax.set_ylabel("simple regret (median over seeds)")
    ax.set_title(f"Multi-fidelity Hartmann-6: regret of the recommendation vs time ({mode} run)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
