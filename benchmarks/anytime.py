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
- ``optuna_threads_asha`` / ``optuna_threads_tpe``: plain Optuna in this process,
  ``study.optimize(objective, timeout=budget, n_jobs=8)`` (8 threads, the slots daskopt gets), the same two
  configurations from the same ``_study(seed, asha)``, so each seed's sampler is paired with daskopt's; the
  objective suggests define-by-run (for a seeded sampler the values equal daskopt's declared ones);
- ``optuna_distributed``: optuna-distributed 0.7, TPE + the same pruner, Dask mode (it asks all of its
  trials before running any, so TPE never sees a result within the run);
- ``ray``: Ray Tune (``ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3)`` + ``OptunaSearch`` with
  TPE), 8 concurrent trials on a local Ray instance (Ray cannot run on the Dask cluster), if Ray installs.

Per seed the runs alternate daskopt_asha, optuna_threads_asha, daskopt_tpe, optuna_threads_tpe (then
optuna_distributed), so load drifts hit both sides of each pair alike. ``ANYTIME_SYSTEMS`` (comma-separated,
any of ``daskopt, optuna_threads, optuna_distributed, ray``; default all) picks the systems, e.g.
``ANYTIME_SYSTEMS=daskopt,optuna_threads python -m benchmarks anytime`` skips optuna-distributed and Ray.

Time is measured from the call (``optimize``/``Tuner.fit``) with the cluster already running. The
recommendation at time t is the trial with the best final value (all 27 epochs) finished by t; its simple
regret is its true, noise-free value minus the optimum (3.32237 when nothing has finished). Reported:
the median over seeds of the regret at the budget and of the time to reach ``regret <= 0.3`` (about the
best of 2,000 random points); for each pair daskopt_X / optuna_threads_X, the median of the per-seed
regret differences and a one-sided Wilcoxon signed-rank p-value for "plain Optuna's regret is lower"
(``target_no_worse_than_threads=yes`` when neither p < 0.05); ``benchmarks/anytime.png`` plots the median
regret against time (``--smoke`` writes it to the temp folder). Ray also runs 15 s (``--quick``: 10 s) past
the budget, to give its regret at the budget counted from its first trial's start (Ray starts its trial
actors first).

Budgets: 40 s, 10 seeds for daskopt and plain Optuna, the first 5 of them for optuna-distributed and Ray
(``--quick``: 10 s, 2 seeds, Ray 1 seed; ``--repeats`` sets the seeds of all of them).
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
DESCRIPTION = (
    "regret vs wall clock on multi-fidelity Hartmann-6: daskopt TPE+ASHA and TPE vs plain Optuna threads, "
    "optuna-distributed, Ray"
)
N_CONCURRENT = 8
NOISE = 0.05
THRESHOLD = 0.3
NO_RECOMMENDATION = -HARTMANN_MIN  # regret when no trial has finished all its epochs
RAY_EXTRA_S = 15.0
SYSTEMS = ("daskopt", "optuna_threads", "optuna_distributed", "ray")
SYSTEMS_ENV = "ANYTIME_SYSTEMS"
PAIRS = ("asha", "tpe")  # daskopt_<pair> against optuna_threads_<pair>
ALPHA = 0.05
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
def selected_systems() -> tuple[str, ...]:
    """The systems to run: ``ANYTIME_SYSTEMS`` (comma-separated), else all of them."""
    raw = os.environ.get(SYSTEMS_ENV, "").strip()
    if not raw:
        return SYSTEMS
    chosen = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in chosen if name not in SYSTEMS]
    if unknown:
        raise ValueError(f"{SYSTEMS_ENV}: unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    return tuple(name for name in SYSTEMS if name in chosen)


def run_threads(study: optuna.Study, objective: Any, budget_s: float, n_jobs: int) -> float:
    """Plain Optuna in this process: ``n_jobs`` threads until ``budget_s``; returns the wall time (s)."""
    t0 = time.perf_counter()
    study.optimize(objective, timeout=budget_s, n_jobs=n_jobs)
    return time.perf_counter() - t0


def paired_test(ours: list[float], theirs: list[float]) -> dict[str, float]:
    """Per-seed differences ``ours - theirs`` (regret: > 0 means the baseline did better) and a one-sided
    Wilcoxon signed-rank p-value for "ours is greater" (``nan`` without scipy or without pairs)."""
    diffs = [a - b for a, b in zip(ours, theirs, strict=True)]
    out = {
        "median_diff": statistics.median(diffs) if diffs else math.nan,
        "wins": float(sum(d < 0 for d in diffs)),  # seeds where ours is lower
        "losses": float(sum(d > 0 for d in diffs)),
        "p": math.nan,
    }
    if not diffs:
        return out
    if all(d == 0 for d in diffs):
        out["p"] = 1.0
        return out
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        return out
    out["p"] = float(wilcoxon(diffs, alternative="greater").pvalue)
    return out


def run(settings: Settings) -> dict[str, Any]:
    budget_s, n_epochs, epoch_s = settings.pick(smoke=(1.5, 9, 0.01), quick=(10.0, 27, 0.04), full=(40.0, 27, 0.04))
    seeds = list(range(settings.reps(smoke=1, quick=2, full=10)))
    # optuna-distributed and Ray keep the earlier 5 seeds in the full run (each adds ~40 s per seed)
    other_seeds = seeds if settings.repeats is not None else seeds[: settings.pick(smoke=1, quick=2, full=5)]
    systems = selected_systems()
    objective = functools.partial(anytime_objective, n_epochs=n_epochs, epoch_s=epoch_s, noise=NOISE)
    print(
        f" budget {budget_s:g} s, {n_epochs} epochs × {epoch_s * 1e3:.0f} ms, seeds {seeds}, "
        f"systems {', '.join(systems)}",
        flush=True,
    )
    traces: dict[str, list[Trace]] = {}

    def record(method: str, seed: int, trace: Trace) -> None:
        traces.setdefault(method, []).append(trace)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
        print(
            f"  {method} seed {seed}: regret {trace.regret_at(budget_s):.3f} at {budget_s:g} s, "
            f"{trace.started} trials started, {len(trace.points)} finished all epochs, "
            f"startup {trace.startup_s:.2f} s, call {trace.wall_s:.1f} s, load {load:.2f}",
            flush=True,
        )

    with dask_cluster(2, 4) as client:  # plain Optuna runs in this process; the cluster idles meanwhile
        n_workers = len(client.scheduler_info()["workers"])
        if "daskopt" in systems:
            run_daskopt(client, _study(0, True), objective, n_trials=N_CONCURRENT)  # warm-up
        # optuna-distributed needs n_trials up front and asks them all before running any.
        od_trials = int(budget_s * N_CONCURRENT / (epoch_s * 4))
        for seed in seeds:
            for pair, asha in (("asha", True), ("tpe", False)):
                if "daskopt" in systems:
                    study = _study(seed, asha)
                    call_start = time.time()
                    wall = run_daskopt(
                        client, study, objective, timeout=budget_s, n_concurrent=N_CONCURRENT, search_space=SPACE
                    )
                    record(f"daskopt_{pair}", seed, _trace_from_study(study, call_start, wall))
                    client.wait_for_workers(n_workers, timeout=120)  # in case daskopt restarted a worker at the end
                if "optuna_threads" in systems:
                    study = _study(seed, asha)
                    call_start = time.time()
                    wall = run_threads(study, objective, budget_s, N_CONCURRENT)
                    record(f"optuna_threads_{pair}", seed, _trace_from_study(study, call_start, wall))
            if "optuna_distributed" in systems and seed in other_seeds:
                study = _study(seed, True)
                call_start = time.time()
                wall = run_optuna_distributed(client, study, objective, od_trials, timeout=budget_s)
                record("optuna_distributed", seed, _trace_from_study(study, call_start, wall))
    if "ray" in systems and ray_available():
        # The smoke run only checks that the Ray path works: 2 actors start much faster than 8.
        ray_slots, extra_s = settings.pick(smoke=(2, 3.0), quick=(N_CONCURRENT, 10.0), full=(N_CONCURRENT, RAY_EXTRA_S))
        with ray_session(ray_slots):
            # Ray spends ~10-18 s starting 8 trial actors on 2 cores: the quick run gives it one seed.
            for seed in other_seeds[: settings.pick(smoke=1, quick=1, full=len(other_seeds))]:
                record("ray", seed, run_ray(seed, budget_s, n_epochs, epoch_s, ray_slots, extra_s))

    fields: dict[str, Any] = {}
    for method, runs in traces.items():
        fields[f"{method}_regret"] = statistics.median(t.regret_at(budget_s) for t in runs)
        fields[f"{method}_t_to_{THRESHOLD:g}_s"] = statistics.median(t.time_to(THRESHOLD) for t in runs)
        fields[f"{method}_trials"] = statistics.median(t.started for t in runs)
        fields[f"{method}_startup_s"] = statistics.median(t.startup_s for t in runs)
        fields[f"{method}_call_s"] = statistics.median(t.wall_s for t in runs)
        per_seed = ", ".join(f"{t.regret_at(budget_s):.3f}" for t in runs)
        times = ", ".join(f"{t.time_to(THRESHOLD):.1f}" for t in runs)
        print(f" {method}: regret at {budget_s:g} s per seed [{per_seed}]; time to {THRESHOLD:g} [{times}] s")
    if "ray" in traces:
        fields["ray_regret_after_startup"] = statistics.median(
            t.regret_at(budget_s, offset=t.startup_s) for t in traces["ray"]
        )
    else:
        fields["ray"] = "skipped" if "ray" not in systems else "not_installed"
    if "daskopt_asha" in traces:
        ours = fields["daskopt_asha_regret"]
        if "optuna_distributed" in traces:
            od = fields["optuna_distributed_regret"]
            fields["asha_regret_vs_od"] = ours / od if od else math.nan
        tpe = fields["daskopt_tpe_regret"]
        fields["asha_regret_vs_tpe"] = ours / tpe if tpe else math.nan
    if "daskopt_asha" in traces and "optuna_threads_asha" in traces:
        all_p = []
        for pair in PAIRS:
            ours_r = [t.regret_at(budget_s) for t in traces[f"daskopt_{pair}"]]
            theirs_r = [t.regret_at(budget_s) for t in traces[f"optuna_threads_{pair}"]]
            test = paired_test(ours_r, theirs_r)
            fields[f"{pair}_vs_threads_p"] = test["p"]
            fields[f"{pair}_vs_threads_median_diff"] = test["median_diff"]
            fields[f"{pair}_vs_threads_wins"] = int(test["wins"])
            fields[f"{pair}_vs_threads_losses"] = int(test["losses"])
            all_p.append(test["p"])
            print(
                f" daskopt_{pair} - optuna_threads_{pair}, regret per seed: "
                f"[{', '.join(f'{a - b:+.3f}' for a, b in zip(ours_r, theirs_r, strict=True))}], "
                f"median {test['median_diff']:+.3f}, daskopt lower on {int(test['wins'])}/{len(ours_r)} seeds, "
                f"one-sided Wilcoxon p (plain Optuna better) = {test['p']:.3g}",
                flush=True,
            )
        fields["target_no_worse_than_threads"] = (
            "unknown" if any(math.isnan(p) for p in all_p) else not any(p < ALPHA for p in all_p)
        )
    fields["budget_s"] = budget_s
    fields["seeds"] = len(seeds)
    plot_path = (
        Path(tempfile.gettempdir()) / "anytime-smoke.png"
        if settings.mode == "smoke"
        else ROOT / "benchmarks" / "anytime.png"
    )
    fields["plot"] = plot(traces, budget_s, plot_path, settings.mode)
    return fields


LABELS: dict[str, str] = {
    "daskopt_asha": "daskopt TPE + ASHA",
    "daskopt_tpe": "daskopt TPE, no pruning",
    "optuna_threads_asha": "plain Optuna n_jobs=8, TPE + ASHA",
    "optuna_threads_tpe": "plain Optuna n_jobs=8, TPE",
    "optuna_distributed": "optuna-distributed TPE + ASHA",
    "ray": "Ray Tune ASHA + OptunaSearch(TPE)",
}
# each daskopt configuration and its plain-Optuna pair share a colour; plain Optuna is dashed
STYLES: dict[str, dict[str, Any]] = {
    "daskopt_asha": {"color": "C0"},
    "optuna_threads_asha": {"color": "C0", "linestyle": "--"},
    "daskopt_tpe": {"color": "C1"},
    "optuna_threads_tpe": {"color": "C1", "linestyle": "--"},
    "optuna_distributed": {"color": "C2", "linestyle": ":"},
    "ray": {"color": "C3", "linestyle": ":"},
}


def plot(traces: dict[str, list[Trace]], budget_s: float, path: Path, mode: str) -> str:
    """Median regret over seeds against time, one line per method; returns the path (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib_not_installed"
    grid = [budget_s * i / 400 for i in range(401)]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for method, runs in traces.items():
        curve: list[float] = [statistics.median(t.regret_at(x) for t in runs) for x in grid]
        ax.step(
            grid,
            curve,
            where="post",
            label=f"{LABELS.get(method, method)} ({len(runs)} seeds)",
            **STYLES.get(method, {}),
        )
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
