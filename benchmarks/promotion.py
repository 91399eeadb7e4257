"""promotion: promotion-type ASHA against stopping-type ASHA on the multi-fidelity anytime problem.

The problem is anytime's (:mod:`benchmarks.anytime`): Hartmann-6 in its multi-fidelity form along a
learning curve, noise σ = 0.05, 27 epochs of 40 ms, 8 slots on a 2-worker × 4-thread ``LocalCluster``, a
fixed wall-clock budget, the six parameters declared (``search_space=``). Both arms run
:func:`benchmarks.objectives.checkpointing_anytime_objective` (a checkpoint saved before every report;
its curve is a pure function of ``(x, epoch)``, so a resumed trial reports exactly what it would have
unpaused) with a fresh checkpoint folder per run, so both pay the same checkpoint writes:

- ``promotion``: daskopt, TPE + ``NopPruner`` + ``scheduler=PromotionASHA(max_resource=27, min_resource=1,
  reduction_factor=3)``: a trial pauses at rung 1, 3 or 9 unless it is in that rung's top third, and a
  free slot resumes the best promotable paused trial before starting a new one;
- ``stopping``: daskopt, TPE + ``SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)`` (Optuna's
  stopping-type ASHA: a trial outside a rung's top third when it gets there stops for good).

Each seed's two runs share the TPE seed (``TPESampler(seed=seed)``) and the budget; the arm that runs
first alternates from seed to seed. The recommendation at time t is the trial with the best observed
value at epoch 27 among those that reported it by t (time from the call, with the cluster already
running; the same rule as anytime, which counts COMPLETE trials: here a stopping trial that Optuna's
pruner stops at its rung at epoch 27, after its last report, counts too); regret is its true, noise-free
value minus the optimum (3.32237 when nothing has reached epoch 27).

Printed: a line per run (regret at the budget; trials started, and told within the budget, which is what
TPE learns from: a paused trial stays RUNNING until it is resumed and finishes or the call ends; trials
that reached each rung; pauses, resumes, trials still paused at the end and how many of those were
promotable, i.e. in their rung's top third; epochs computed), the per-seed regrets and ratios, one-sided
Wilcoxon signed-rank p-values both ways, and ``RESULT promotion regret_ratio=...``: the median over seeds
of promotion's regret / stopping's (``ratio_of_medians`` is the ratio of the two medians,
``regret_ratio_complete_only`` the ratio with anytime's COMPLETE-only rule). Target: ``regret_ratio <= 1``.
Every report of every trial is checked against the curve recomputed in the driver (``mismatched_reports``
must be 0) and against the epochs the trial computed (``repeated_epochs`` must be 0): a resumed trial goes
on exactly where it paused.

Budgets: 30 s, 10 seeds (``--quick``: 10 s, 2 seeds; ``--smoke``: 1.5 s, 9 epochs of 10 ms, 2 seeds;
``--repeats`` sets the seeds).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna

from benchmarks.anytime import N_CONCURRENT, NO_RECOMMENDATION, NOISE, SPACE, THRESHOLD
from benchmarks.common import dask_cluster, run_daskopt
from benchmarks.objectives import (
    EPOCHS_RUN_ATTR,
    PARAMS,
    SPAN_ATTR,
    STRETCHES_ATTR,
    checkpointing_anytime_objective,
    learning_curve,
    regret,
)
from daskopt import attributes

NAME = "promotion"
DESCRIPTION = "promotion-type ASHA (pauses and resumes) vs stopping-type ASHA (Optuna's SuccessiveHalving)"
ARMS = ("promotion", "stopping")
REDUCTION_FACTOR = 3
MIN_RESOURCE = 1


@dataclass
class Run:
    """One arm's run: the trials that reached the last epoch as (seconds since the call, value, regret,
    COMPLETE or not)."""

    points: list[tuple[float, float, float, bool]] = field(default_factory=list)
    started: int = 0
    complete: int = 0
    pruned: int = 0
    reached: dict[int, int] = field(default_factory=dict)  # rung step -> trials that reported at it
    paused: int = 0  # trials paused at least once
    pauses: int = 0  # pauses in all
    resumed: int = 0  # trials resumed at least once
    paused_at_end: int = 0  # still paused when the call ended (recorded PRUNED)
    left_promotable: int = 0  # of those, in their rung's top third: promotable, never resumed
    told_in_budget: int = 0  # trials told (COMPLETE or PRUNED) within the budget: what TPE learned from
    epochs: int = 0  # epochs computed, over every trial and stretch
    repeated_epochs: int = 0  # epochs computed more than once (a resumed trial must never repeat one)
    mismatched: int = 0  # reports that differ from the curve recomputed here
    wall_s: float = math.nan

    def regret_at(self, t: float, complete_only: bool = False) -> float:
        """Regret of the recommendation at ``t``; ``complete_only``: among COMPLETE trials only (anytime's
        rule, which leaves out a trial pruned at its rung at the last epoch)."""
        best_value, best_regret = math.inf, NO_RECOMMENDATION
        for when, value, true_regret, complete in sorted(self.points):
            if when > t:
                break
            if complete_only and not complete:
                continue
            if value < best_value:
                best_value, best_regret = value, true_regret
        return best_regret

    def time_to(self, threshold: float) -> float:
        best_value = math.inf
        for when, value, true_regret, _ in sorted(self.points):
            if value < best_value:
                best_value = value
                if true_regret <= threshold:
                    return when
        return math.inf


def rung_steps(n_epochs: int) -> list[int]:
    """The rungs' steps below the full budget: 1, 3, 9 for 27 epochs."""
    steps, step = [], MIN_RESOURCE
    while step < n_epochs:
        steps.append(step)
        step *= REDUCTION_FACTOR
    return steps


def _study(seed: int, arm: str) -> optuna.Study:
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.NopPruner()
        if arm == "promotion"
        else optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_RESOURCE, reduction_factor=REDUCTION_FACTOR)
    )
    return optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)


def _scheduler(arm: str, n_epochs: int) -> Any:
    if arm != "promotion":
        return None
    from daskopt.schedulers import PromotionASHA

    return PromotionASHA(max_resource=n_epochs, min_resource=MIN_RESOURCE, reduction_factor=REDUCTION_FACTOR)


def run_arm(client: Any, arm: str, seed: int, objective: Any, n_epochs: int, budget_s: float, **kwargs: Any) -> Run:
    """One daskopt call of ``arm`` on ``client`` with its own checkpoint folder."""
    study = _study(seed, arm)
    scheduler = _scheduler(arm, n_epochs)
    folder = tempfile.mkdtemp(prefix=f"daskopt-promotion-{arm}-")
    try:
        call_start = time.time()
        wall = run_daskopt(
            client,
            study,
            objective,
            n_concurrent=N_CONCURRENT,
            search_space=SPACE,
            scheduler=scheduler,
            tracking={"checkpoint_dir": folder},
            **kwargs,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = summarize(study, call_start, wall, n_epochs, budget_s)
    result.left_promotable = left_promotable(scheduler)
    return result


def left_promotable(scheduler: Any) -> int:
    """Trials in a rung's top third that were never promoted out of it when the call ended: paused trials a
    free slot should have resumed (a few may have become promotable after the budget, when nothing resumes)."""
    rungs = getattr(scheduler, "rungs", None)
    if rungs is None:
        return 0
    return sum(len(set(rungs.top(k)) - rungs.promoted[k]) for k in range(len(rungs.steps)))


def summarize(study: optuna.Study, call_start: float, wall_s: float, n_epochs: int, budget_s: float) -> Run:
    """What one run did, from its study; checks every report against the curve."""
    run = Run(wall_s=wall_s, reached={step: 0 for step in [*rung_steps(n_epochs), n_epochs]})
    complete = optuna.trial.TrialState.COMPLETE
    for trial in study.get_trials(deepcopy=False):
        span = trial.user_attrs.get(SPAN_ATTR)
        if not span:
            continue
        run.started += 1
        run.complete += trial.state == complete
        run.pruned += trial.state == optuna.trial.TrialState.PRUNED
        told = trial.datetime_complete
        run.told_in_budget += told is not None and told.timestamp() - call_start <= budget_s
        steps = trial.intermediate_values
        for step in run.reached:
            run.reached[step] += step in steps
        pauses = trial.user_attrs.get(attributes.PAUSED_AT) or []
        run.paused += bool(pauses)
        run.pauses += len(pauses)
        run.resumed += trial.user_attrs.get(STRETCHES_ATTR, 1) > 1
        run.paused_at_end += bool(trial.user_attrs.get(attributes.SUSPENDED))
        computed = int(trial.user_attrs.get(EPOCHS_RUN_ATTR, 0))
        run.epochs += computed
        run.repeated_epochs += max(0, computed - max(steps, default=0))
        x = [trial.params[name] for name in PARAMS]
        run.mismatched += sum(
            not math.isclose(value, learning_curve(x, step, n_epochs, NOISE), rel_tol=0.0, abs_tol=1e-12)
            for step, value in steps.items()
        )
        if n_epochs in steps:
            run.points.append((span[2] - call_start, steps[n_epochs], regret(x), trial.state == complete))
    return run


def paired(promotion: list[float], stopping: list[float]) -> dict[str, float]:
    """Per-seed ratios and differences (promotion vs stopping) and one-sided Wilcoxon p-values both ways."""
    ratios = [p / s if s else math.nan for p, s in zip(promotion, stopping, strict=True)]
    diffs = [p - s for p, s in zip(promotion, stopping, strict=True)]
    out = {
        "regret_ratio": statistics.median(ratios) if ratios else math.nan,
        "median_diff": statistics.median(diffs) if diffs else math.nan,
        "wins": float(sum(d < 0 for d in diffs)),  # seeds where promotion's regret is lower
        "losses": float(sum(d > 0 for d in diffs)),
        "p_promotion_lower": math.nan,
        "p_stopping_lower": math.nan,
    }
    if not diffs or all(d == 0 for d in diffs):
        return out
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        return out
    out["p_promotion_lower"] = float(wilcoxon(diffs, alternative="less").pvalue)
    out["p_stopping_lower"] = float(wilcoxon(diffs, alternative="greater").pvalue)
    return out


def describe(run: Run, budget_s: float) -> str:
    reached = ", ".join(f"{step}: {count}" for step, count in run.reached.items())
    return (
        f"regret {run.regret_at(budget_s):.3f} at {budget_s:g} s, {run.started} trials started "
        f"({run.complete} complete, {run.pruned} pruned; {run.told_in_budget} told within the budget), "
        f"reached epoch {{{reached}}}, "
        f"{run.paused} paused ({run.pauses} pauses, {run.resumed} resumed, {run.paused_at_end} paused at the end, "
        f"{run.left_promotable} of them promotable), "
        f"{run.epochs} epochs computed ({run.repeated_epochs} repeated), {run.mismatched} reports off the curve, "
        f"call {run.wall_s:.1f} s"
    )


def run(settings: Any) -> dict[str, Any]:
    budget_s, n_epochs, epoch_s = settings.pick(smoke=(1.5, 9, 0.01), quick=(10.0, 27, 0.04), full=(30.0, 27, 0.04))
    seeds = list(range(settings.reps(smoke=2, quick=2, full=10)))
    objective = functools.partial(checkpointing_anytime_objective, n_epochs=n_epochs, epoch_s=epoch_s, noise=NOISE)
    print(
        f" budget {budget_s:g} s, {n_epochs} epochs × {epoch_s * 1e3:.0f} ms, {N_CONCURRENT} slots, seeds {seeds}, "
        f"rungs at epochs {rung_steps(n_epochs)}, reduction factor {REDUCTION_FACTOR}",
        flush=True,
    )
    runs: dict[str, list[Run]] = {arm: [] for arm in ARMS}
    # another cluster on the machine holds Dask's default dashboard port: not this benchmark's concern
    warnings.filterwarnings("ignore", message="Port .* is already in use")
    with dask_cluster(2, 4) as client:
        n_workers = len(client.scheduler_info()["workers"])
        for arm in ARMS:  # warm-up: imports and first connections on every worker, for both paths
            run_arm(client, arm, 0, objective, n_epochs, budget_s, n_trials=N_CONCURRENT)
        for seed in seeds:
            order = ARMS if seed % 2 == 0 else ARMS[::-1]
            for arm in order:
                result = run_arm(client, arm, seed, objective, n_epochs, budget_s, timeout=budget_s)
                runs[arm].append(result)
                load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
                print(f"  {arm} seed {seed}: {describe(result, budget_s)}, load {load:.2f}", flush=True)
                client.wait_for_workers(n_workers, timeout=120)  # in case daskopt restarted a worker at the end

    regrets = {arm: [r.regret_at(budget_s) for r in runs[arm]] for arm in ARMS}
    test = paired(regrets["promotion"], regrets["stopping"])
    fields: dict[str, Any] = {"regret_ratio": test["regret_ratio"]}
    medians = {arm: statistics.median(regrets[arm]) for arm in ARMS}
    fields["ratio_of_medians"] = medians["promotion"] / medians["stopping"] if medians["stopping"] else math.nan
    for arm in ARMS:
        arm_runs = runs[arm]
        fields[f"{arm}_regret"] = medians[arm]
        fields[f"{arm}_t_to_{THRESHOLD:g}_s"] = statistics.median(r.time_to(THRESHOLD) for r in arm_runs)
        fields[f"{arm}_trials"] = statistics.median(r.started for r in arm_runs)
        fields[f"{arm}_full"] = statistics.median(len(r.points) for r in arm_runs)
        fields[f"{arm}_told_in_budget"] = statistics.median(r.told_in_budget for r in arm_runs)
        fields[f"{arm}_epochs"] = statistics.median(r.epochs for r in arm_runs)
        fields[f"{arm}_call_s"] = statistics.median(r.wall_s for r in arm_runs)
        print(
            f" {arm}: regret at {budget_s:g} s per seed [{', '.join(f'{v:.3f}' for v in regrets[arm])}], "
            f"median {medians[arm]:.3f}; trials reaching epoch {n_epochs} per seed "
            f"[{', '.join(str(len(r.points)) for r in arm_runs)}]",
            flush=True,
        )
    complete_only = {arm: [r.regret_at(budget_s, complete_only=True) for r in runs[arm]] for arm in ARMS}
    fields["regret_ratio_complete_only"] = paired(complete_only["promotion"], complete_only["stopping"])["regret_ratio"]
    fields["promotion_resumed"] = statistics.median(r.resumed for r in runs["promotion"])
    fields["promotion_paused_at_end"] = statistics.median(r.paused_at_end for r in runs["promotion"])
    fields["promotion_left_promotable"] = statistics.median(r.left_promotable for r in runs["promotion"])
    fields["mismatched_reports"] = sum(r.mismatched for arm in ARMS for r in runs[arm])
    fields["repeated_epochs"] = sum(r.repeated_epochs for arm in ARMS for r in runs[arm])
    ratios = [p / s if s else math.nan for p, s in zip(regrets["promotion"], regrets["stopping"], strict=True)]
    print(
        f" promotion / stopping regret per seed: [{', '.join(f'{v:.2f}' for v in ratios)}], "
        f"median {test['regret_ratio']:.3f}; promotion lower on {int(test['wins'])}/{len(seeds)} seeds "
        f"(higher on {int(test['losses'])}); one-sided Wilcoxon p (promotion lower) = {test['p_promotion_lower']:.3g}, "
        f"p (stopping lower) = {test['p_stopping_lower']:.3g}",
        flush=True,
    )
    fields["median_diff"] = test["median_diff"]
    fields["wins"] = int(test["wins"])
    fields["losses"] = int(test["losses"])
    fields["p_promotion_lower"] = test["p_promotion_lower"]
    fields["p_stopping_lower"] = test["p_stopping_lower"]
    fields["target_met"] = "unknown" if math.isnan(test["regret_ratio"]) else test["regret_ratio"] <= 1.0
    fields["budget_s"] = budget_s
    fields["seeds"] = len(seeds)
    return fields
