"""pbt_digits: PBT on the torch digits CNN on CPU vs TPE + ASHA, best validation accuracy over time.

The network, data and training loop are ``examples/pbt_digits`` (shipped to the workers by value): a
two-layer CNN on scikit-learn's ``digits`` (60/20/20 train/validation/test split), SGD with batches of 64,
one CPU thread per trial. Search space, the same for both arms: ``lr`` log-uniform in [1e-3, 0.5],
``momentum`` uniform in [0, 0.99], ``weight_decay`` log-uniform in [1e-6, 1e-2]. Every trial trains at most
``EPOCHS`` (27) epochs and reports validation accuracy after each; it saves a checkpoint before each report
in both arms (so an epoch costs the same in both). Both arms start every network from the same initial
weights for a given seed (``seed_everything(seed)``).

Arms, on one 2-worker × 1-thread ``LocalCluster`` (2 slots), the same wall-clock budget, the same seeds:

- ``pbt``: ``daskopt.schedulers.PBT(perturbation_interval=3, quantile_fraction=0.25,
  resample_probability=0.25, perturbation_factors=(1.2, 0.8), synchronous=True, last_step=26)``, a
  population of ``POPULATION`` (16; synchronous because it is larger than the slots), initial values from
  ``RandomSampler(seed)``; its 16 × 27 epochs take about the 60 s budget on an idle 2-core machine;
- ``tpe_asha``: ``TPESampler(seed, n_startup_trials=8)`` + ``SuccessiveHalvingPruner(min_resource=1,
  reduction_factor=3)`` (ASHA over epochs, rungs 1, 3, 9, 27), ``timeout=budget``.

A trial running past the budget stops as pruned at its next epoch, so each call ends with its budget.

What is measured, from the call (cluster up, every worker warmed by a short PBT run first): at each time t,
the best validation accuracy any trial has reported by t (any epoch: each has a checkpoint), and the test
accuracy of that (trial, epoch), the recommendation (ties go to the earlier report). Medians over seeds
at the end of the budget, time to validation accuracy >= ``TARGET`` (0.98; the budget when never), the
epochs each arm trained within the budget, the median time per epoch (a stretch's first epoch includes
its start: restoring the checkpoint, building the model), how busy the slots were (each stretch from its
start to its last report, over slots × budget), and a figure (``benchmarks/pbt_digits.png``): median best
validation accuracy and its test accuracy against time.

Sizes: 60 s budget, 4 seeds (``--quick``: 30 s, population 8, 1 seed; ``--smoke``: 3 epochs, population
4, interval 1, 6 s, 1 seed; ``--repeats`` sets the seeds; the environment variables ``PBT_DIGITS_BUDGET``
(seconds) and ``PBT_DIGITS_POPULATION`` change the budget and the population). Run per seed in the order
PBT, TPE + ASHA.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from benchmarks.common import ROOT, Settings, dask_cluster, run_daskopt

NAME = "pbt_digits"
DESCRIPTION = "PBT on the torch digits CNN on CPU vs TPE + ASHA: best validation accuracy over time"
EXAMPLE = ROOT / "examples" / "pbt_digits"
EPOCHS = 27
INTERVAL = 3
POPULATION = 16
TARGET = 0.98
N_WORKERS = 2  # processes of one thread: one trial per process, as the example runs


def example() -> Any:
    """The example's module (``pbt_digits``), shipped to workers by value."""
    import cloudpickle

    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    import pbt_digits

    cloudpickle.register_pickle_by_value(pbt_digits)
    return pbt_digits


def space() -> dict[str, optuna.distributions.BaseDistribution]:
    """The distributions of ``pbt_digits.suggest``, declared (sampled in the loop, shipped with each task)."""
    from optuna.distributions import FloatDistribution

    return {
        "lr": FloatDistribution(1e-3, 0.5, log=True),
        "momentum": FloatDistribution(0.0, 0.99),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
    }


# ------------------------------------------------------------------------------------ the objective
def _log(path: str, line: str) -> None:
    """One line appended to the run's event log (small O_APPEND writes from every worker process)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def objective(trial: Any, log_path: str, epochs: int, seed: int, module: Any, deadline: float) -> float:
    """The example's training, logging ``t trial epoch val_acc test_acc`` for every epoch it runs; past
    ``deadline`` (the end of the budget, ``time.time()``) it stops as pruned, so a run ends with its budget."""
    if time.time() > deadline:
        raise optuna.TrialPruned("budget spent")
    _log(log_path, f"{time.time():.6f} {trial.number} start")
    _, _, _, _, x_test, y_test = module.tensors()

    def on_epoch(epoch: int, value: float, model: Any) -> None:
        test = module.accuracy(model, x_test, y_test)
        _log(log_path, f"{time.time():.6f} {trial.number} {epoch} {value:.6f} {test:.6f}")
        if time.time() > deadline:
            raise optuna.TrialPruned("budget spent")

    return float(module.train(trial, epochs, on_epoch=on_epoch, seed=seed))


# ------------------------------------------------------------------------------------------ one run
@dataclass
class Run:
    """One arm's run, read back from its event log: reports within the budget, by time since the call."""

    reports: list[tuple[float, int, int, float, float]] = field(default_factory=list)  # (t, trial, epoch, val, test)
    starts: list[tuple[float, int]] = field(default_factory=list)  # (t, trial): an objective call began
    wall_s: float = math.nan
    trials: int = 0
    complete: int = 0

    def best_at(self, t: float) -> tuple[float, float]:
        """(best validation accuracy reported by ``t``, test accuracy of that report); nan before any."""
        best = (math.nan, math.nan)
        for when, _, _, val, test in self.reports:
            if when > t:
                break
            if math.isnan(best[0]) or val > best[0]:
                best = (val, test)
        return best

    def epoch_s(self) -> float:
        """Median seconds per epoch: from a stretch's start or previous epoch to each report."""
        last: dict[int, float] = {}
        gaps = []
        for when, kind, number in sorted(
            [(t, 0, n) for t, n in self.starts] + [(t, 1, n) for t, n, *_ in self.reports]
        ):
            if kind == 1 and number in last:
                gaps.append(when - last[number])
            last[number] = when
        return statistics.median(gaps) if gaps else math.nan

    def busy(self, slots: int, budget_s: float) -> float:
        """The fraction of the slots' time spent in objectives: each stretch from its start to its last
        report (what is left of the slot time went to dispatch, pauses and waiting at barriers)."""
        events = sorted([(t, n, None) for t, n in self.starts] + [(t, n, 1) for t, n, *_ in self.reports])
        opened: dict[int, float] = {}
        last: dict[int, float] = {}
        total = 0.0
        for when, number, kind in events:
            if kind is None:  # a new stretch of this trial: close the previous one
                if number in opened and number in last:
                    total += last.pop(number) - opened[number]
                opened[number] = when
            elif number in opened:
                last[number] = when
        total += sum(last[n] - opened[n] for n in last)
        return total / (slots * budget_s)

    def time_to(self, target: float) -> float:
        """When a validation accuracy >= ``target`` was first reported (``inf``: never within the budget)."""
        return next((when for when, _, _, val, _ in self.reports if val >= target), math.inf)


def read_log(path: Path, call_start: float, budget_s: float) -> Run:
    """The reports and stretch starts of ``path`` within the budget, in seconds since the call."""
    run = Run()
    if path.exists():
        for line in path.read_text().splitlines():
            t, number, *rest = line.split()
            when = float(t) - call_start
            if when > budget_s:
                continue
            if rest == ["start"]:
                run.starts.append((when, int(number)))
            else:
                run.reports.append((when, int(number), int(rest[0]), float(rest[1]), float(rest[2])))
    run.reports.sort()
    run.starts.sort()
    return run


@dataclass(frozen=True)
class Sizes:
    epochs: int
    interval: int
    population: int
    budget_s: float


def run_arm(arm: str, client: Any, seed: int, sizes: Sizes, work: Path, module: Any) -> Run:
    import daskopt
    from daskopt.schedulers import PBT

    log_path = work / f"{arm}-{seed}.log"
    call_start = time.time()
    fn: Callable[[Any], float] = functools.partial(
        objective,
        log_path=str(log_path),
        epochs=sizes.epochs,
        seed=seed,
        module=module,
        deadline=call_start + sizes.budget_s,
    )
    tracking = daskopt.Tracking(checkpoint_dir=str(work / f"ckpt-{arm}-{seed}"))
    if arm == "pbt":
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed), pruner=optuna.pruners.NopPruner()
        )
        scheduler = PBT(perturbation_interval=sizes.interval, synchronous=True, last_step=sizes.epochs - 1, seed=seed)
        options: dict[str, Any] = {"n_trials": sizes.population, "scheduler": scheduler}
    else:
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=8),
            pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        )
        options = {"timeout": sizes.budget_s}
    wall = run_daskopt(client, study, fn, search_space=space(), tracking=tracking, **options)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    failed = states.count(optuna.trial.TrialState.FAIL)
    if failed:
        print(f"   {arm} seed {seed}: {failed} trial(s) FAILED", flush=True)
    result = read_log(log_path, call_start, sizes.budget_s)
    result.wall_s = wall
    result.trials = len(states)
    result.complete = states.count(optuna.trial.TrialState.COMPLETE)
    return result


def _describe(arm: str, seed: int, run: Run, budget_s: float) -> str:
    val, test = run.best_at(budget_s)
    reached = run.time_to(TARGET)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return (
        f"  {arm} seed {seed}: best val acc {val:.4f} (test {test:.4f}) at {budget_s:g} s, "
        f"val >= {TARGET} at {f'{reached:.1f} s' if math.isfinite(reached) else 'never'}, "
        f"{len(run.reports)} epochs in budget ({run.epoch_s():.2f} s each), {len(run.starts)} stretches, "
        f"slots busy {run.busy(N_WORKERS, budget_s):.0%}, "
        f"{run.trials} trials ({run.complete} complete), "
        f"call {run.wall_s:.1f} s, load {load:.2f}"
    )


# ------------------------------------------------------------------------------------------ the runs
ARMS = ("pbt", "tpe_asha")
LABELS = {"pbt": "daskopt PBT (synchronous)", "tpe_asha": "daskopt TPE + ASHA"}


def run(settings: Settings) -> dict[str, Any]:
    sizes = settings.pick(
        smoke=Sizes(epochs=3, interval=1, population=4, budget_s=6.0),
        quick=Sizes(epochs=EPOCHS, interval=INTERVAL, population=8, budget_s=30.0),
        full=Sizes(epochs=EPOCHS, interval=INTERVAL, population=POPULATION, budget_s=60.0),
    )
    if os.environ.get("PBT_DIGITS_BUDGET"):
        sizes = dataclasses.replace(sizes, budget_s=float(os.environ["PBT_DIGITS_BUDGET"]))
    if os.environ.get("PBT_DIGITS_POPULATION"):
        sizes = dataclasses.replace(sizes, population=int(os.environ["PBT_DIGITS_POPULATION"]))
    seeds = list(range(settings.reps(smoke=1, quick=1, full=4)))
    module = example()
    print(
        f" {sizes.epochs} epochs per trial, PBT population {sizes.population} (interval {sizes.interval}), "
        f"{N_WORKERS} slots, budget {sizes.budget_s:g} s, seeds {seeds}",
        flush=True,
    )
    runs: dict[str, list[Run]] = {arm: [] for arm in ARMS}
    work = Path(tempfile.mkdtemp(prefix="daskopt-pbt-digits-"))
    try:
        with dask_cluster(N_WORKERS, 1) as client:
            warm = Sizes(epochs=2, interval=1, population=N_WORKERS, budget_s=120.0)
            run_arm("pbt", client, 10_000, warm, work, module)  # torch, the data and the module in every worker
            for seed in seeds:
                for arm in ARMS:
                    result = run_arm(arm, client, seed, sizes, work, module)
                    runs[arm].append(result)
                    print(_describe(arm, seed, result, sizes.budget_s), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    budget = sizes.budget_s
    fields: dict[str, Any] = {}
    for arm in ARMS:
        ends = [r.best_at(budget) for r in runs[arm]]
        fields[f"{arm}_val_acc"] = statistics.median(v for v, _ in ends)
        fields[f"{arm}_test_acc"] = statistics.median(t for _, t in ends)
        fields[f"{arm}_t_{TARGET}_s"] = statistics.median(min(r.time_to(TARGET), budget) for r in runs[arm])
        fields[f"{arm}_epochs"] = statistics.median(len(r.reports) for r in runs[arm])
        fields[f"{arm}_epoch_s"] = statistics.median(r.epoch_s() for r in runs[arm])
        fields[f"{arm}_busy"] = statistics.median(r.busy(N_WORKERS, budget) for r in runs[arm])
        fields[f"{arm}_stretches"] = statistics.median(len(r.starts) for r in runs[arm])
        fields[f"{arm}_trials"] = statistics.median(r.trials for r in runs[arm])
        fields[f"{arm}_call_s"] = statistics.median(r.wall_s for r in runs[arm])
        print(
            f" {arm}: best val acc per seed [{', '.join(f'{v:.4f}' for v, _ in ends)}], "
            f"test [{', '.join(f'{t:.4f}' for _, t in ends)}]",
            flush=True,
        )
    # at equal compute: the best validation accuracy after as many epochs as the shortest run trained
    equal = min(len(r.reports) for arm in ARMS for r in runs[arm])
    for arm in ARMS:
        at = [_running_best(r)[equal - 1] if equal else math.nan for r in runs[arm]]
        fields[f"{arm}_val_acc_at_equal_epochs"] = statistics.median(at)
    fields["equal_epochs"] = equal
    pbt_ends = [r.best_at(budget)[0] for r in runs["pbt"]]
    tpe_ends = [r.best_at(budget)[0] for r in runs["tpe_asha"]]
    fields["pbt_wins"] = sum(a > b for a, b in zip(pbt_ends, tpe_ends, strict=True))
    fields["tpe_asha_wins"] = sum(b > a for a, b in zip(pbt_ends, tpe_ends, strict=True))
    fields["budget_s"] = budget
    fields["population"] = sizes.population
    fields["seeds"] = len(seeds)
    plot_path = (
        Path(tempfile.gettempdir()) / "pbt_digits-smoke.png"
        if settings.mode == "smoke"
        else ROOT / "benchmarks" / "pbt_digits.png"
    )
    fields["plot"] = plot(runs, sizes, plot_path, settings.mode)
    return fields


def plot(runs: dict[str, list[Run]], sizes: Sizes, path: Path, mode: str) -> str:
    """Median over seeds against time of the best validation accuracy and of its test accuracy, and the
    best validation accuracy against the epochs trained (what the load of the machine does not move);
    returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib_not_installed"
    grid = [sizes.budget_s * i / 300 for i in range(301)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
    for arm, color in zip(ARMS, ("C0", "C1"), strict=True):
        label = f"{LABELS[arm]} ({len(runs[arm])} seeds)"
        for ax, index in zip(axes[:2], (0, 1), strict=True):
            curve = [_median_or_nan([r.best_at(x)[index] for r in runs[arm]]) for x in grid]
            ax.step(grid, curve, where="post", color=color, label=label)
        trained = min((len(r.reports) for r in runs[arm]), default=0)
        by_epochs = [_running_best(r) for r in runs[arm]]
        curve = [statistics.median(b[k] for b in by_epochs) for k in range(trained)]
        axes[2].step(range(1, trained + 1), curve, where="post", color=color, label=label)
    axes[0].set_ylabel("accuracy (median over seeds)")
    axes[0].set_title("best validation accuracy reported so far", fontsize=10)
    axes[1].set_title("test accuracy of that (trial, epoch)", fontsize=10)
    axes[2].set_title("best validation accuracy by epochs trained", fontsize=10)
    for ax in axes[:2]:
        ax.set_xlabel(f"wall-clock seconds since the call ({N_WORKERS} slots, 2 cores)")
    axes[2].set_xlabel("epochs trained, all trials together")
    for ax in axes:
        ax.set_ylim(0.9, 1.0)
        ax.grid(alpha=0.3)
    axes[0].axhline(TARGET, color="grey", linestyle=":", linewidth=1)
    axes[2].axhline(TARGET, color="grey", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Digits CNN on CPU: PBT (population {sizes.population}) vs TPE + ASHA, at most {sizes.epochs} epochs "
        f"a trial, {sizes.budget_s:g} s ({mode} run)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _median_or_nan(values: list[float]) -> float:
    """The median, or nan while any seed has no value yet (the curve starts when every seed has one)."""
    return math.nan if any(math.isnan(v) for v in values) else statistics.median(values)


def _running_best(run: Run) -> list[float]:
    """The best validation accuracy after each epoch trained, in the order they were reported."""
    best, out = -math.inf, []
    for _, _, _, val, _ in run.reports:
        best = max(best, val)
        out.append(best)
    return out
