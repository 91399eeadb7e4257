"""Objectives and samplers shared by the benchmarks. Module-level, so workers unpickle them by reference.

Every objective takes an ``optuna.Trial``-compatible argument (plain Optuna, daskopt, optuna-distributed and
Optuna on ``DaskStorage`` all run the same function); parameters are bound with :func:`functools.partial`.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from benchmarks.baselines import timed_reports
from benchmarks.common import where_am_i

SPAN_ATTR = "span"
"""User attr ``[slot, t_start, t_end]``: where and when the objective's work ran (``time.time()``)."""


def stepping_objective(trial: Any, n_steps: int, step_s: float) -> float:
    """A trial that works ``step_s`` per step (sleeping: the GIL is free, as in numpy/GPU work), then
    reports and asks ``should_prune()``; every ``should_prune()`` duration goes to ``prune_rtt_s``."""
    x = trial.suggest_float("x", -10.0, 10.0)
    final = x * x
    return timed_reports(trial, final, n_steps, step_s)


def report_loop(trial: Any, n_steps: int, prune_each_step: bool) -> float:
    """Report ``n_steps`` intermediate values as fast as possible (asking ``should_prune()`` after each when
    ``prune_each_step``). Every trial reports the same curve, so a median pruner computes its decision in
    full each time but never prunes: all reports are kept and can be counted afterwards."""
    trial.suggest_float("x", 0.0, 1.0)
    for step in range(n_steps):
        trial.report(1.0, step)
        if prune_each_step and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")
    return 1.0


SPACE = {
    "x": FloatDistribution(-10.0, 10.0),
    "y": IntDistribution(0, 10),
    "c": CategoricalDistribution(["a", "b", "c"]),
}
"""The parameters of :func:`sleep_objective`, for engines that take a declared search space."""


def sleep_objective(trial: Any, sleep_s: float) -> float:
    """Three define-by-run suggestions, then ``sleep_s`` of work; records its span (slot, start, end)."""
    x = trial.suggest_float("x", -10.0, 10.0)
    y = trial.suggest_int("y", 0, 10)
    trial.suggest_categorical("c", ["a", "b", "c"])
    start = time.time()
    time.sleep(sleep_s)
    trial.set_user_attr(SPAN_ATTR, [where_am_i(), start, time.time()])
    return x * x + y


# ----------------------------------------------------------------------------- the anytime problem
# Hartmann 6-D (Dixon & Szegő 1978; constants as in Surjanovic & Bingham's Virtual Library of Simulation
# Experiments): f(x) = -sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2) on [0, 1]^6, minimum -3.32237.
HARTMANN_ALPHA = (1.0, 1.2, 3.0, 3.2)
HARTMANN_A = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
HARTMANN_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)
HARTMANN_MIN = -3.32237
PARAMS = ("x1", "x2", "x3", "x4", "x5", "x6")


def hartmann6(x: tuple[float, ...] | list[float], fidelity: float = 1.0) -> float:
    """Hartmann-6 at fidelity ``s`` in (0, 1]: the multi-fidelity form of Kandasamy et al. (2017) and
    BoTorch's ``AugmentedHartmann``, ``alpha_1 -> alpha_1 - 0.1 (1 - s)``; ``s = 1`` is the true function."""
    total = 0.0
    for i in range(4):
        alpha = HARTMANN_ALPHA[i] - (0.1 * (1.0 - fidelity) if i == 0 else 0.0)
        exponent = sum(HARTMANN_A[i][j] * (x[j] - HARTMANN_P[i][j]) ** 2 for j in range(6))
        total -= alpha * math.exp(-exponent)
    return total


def learning_curve(x: tuple[float, ...] | list[float], epoch: int, n_epochs: int, noise: float) -> float:
    """The value a training run with hyperparameters ``x`` reports after ``epoch`` of ``n_epochs`` epochs.

    ``H6_s(x) + exp(-epoch / tau(x)) + noise * N(0, 1)`` with fidelity ``s = epoch / n_epochs``: an untrained
    model starts about 1 above its final value and approaches ``H6(x)`` as epochs grow. The convergence
    time ``tau = 1 + 3 x1`` (1 to 4 epochs) depends on the configuration, so early epochs rank
    configurations imperfectly (at epoch 1 the offsets differ by up to 0.4, at epoch 9 by 0.1), as with
    real learning curves. The noise is a deterministic function of ``(x, epoch)``.
    """
    tau = 1.0 + 3.0 * x[0]
    clean = hartmann6(x, epoch / n_epochs) + math.exp(-epoch / tau)
    rng = random.Random(hash((tuple(round(v, 12) for v in x), epoch)))
    return clean + noise * rng.gauss(0.0, 1.0)


def regret(x: tuple[float, ...] | list[float]) -> float:
    """Simple regret of recommending ``x``: its true (full-fidelity, noise-free) value above the optimum."""
    return hartmann6(x) - HARTMANN_MIN


def anytime_objective(trial: Any, n_epochs: int, epoch_s: float, noise: float) -> float:
    """Train ``n_epochs`` epochs of ``epoch_s`` each, reporting after each and pruning when told to.

    Records its span (slot, start, end), pruned or not, so the regret curve can be built from the
    workers' clocks."""
    start = time.time()
    x = [trial.suggest_float(name, 0.0, 1.0) for name in PARAMS]
    value = 0.0
    try:
        for epoch in range(1, n_epochs + 1):
            time.sleep(epoch_s)
            value = learning_curve(x, epoch, n_epochs, noise)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
    finally:
        trial.set_user_attr(SPAN_ATTR, [where_am_i(), start, time.time()])
    return value


EPOCHS_RUN_ATTR = "epochs_run"
"""User attr: the epochs a checkpointing trial computed, over all its stretches (each epoch once)."""
STRETCHES_ATTR = "stretches"
"""User attr: how many times the objective ran for the trial (1 + the times it was resumed)."""


def checkpointing_anytime_objective(trial: Any, n_epochs: int, epoch_s: float, noise: float) -> float:
    """:func:`anytime_objective` as a training run that checkpoints, so a scheduler can pause and resume it.

    Each epoch: the sleep, then ``trial.save_checkpoint(state, epoch)`` before ``trial.report(value, epoch)``
    and ``should_prune()``. A resumed trial loads the state and goes on at ``trial.resume_step + 1``. The
    curve's value at an epoch is a pure function of ``(x, epoch)`` (its noise is seeded by them, see
    :func:`learning_curve`), so the state holds only counters, and a resumed trial's later epochs are
    exactly what an unpaused trial reports. Records its span (slot, first start, end of this stretch) and
    :data:`EPOCHS_RUN_ATTR` / :data:`STRETCHES_ATTR`. Without ``save_checkpoint`` (plain Optuna) it runs
    as :func:`anytime_objective`.
    """
    x = [trial.suggest_float(name, 0.0, 1.0) for name in PARAMS]
    load = getattr(trial, "load_checkpoint", None)
    state = (load() if load else None) or {"start": time.time(), "value": 0.0, "epochs_run": 0, "stretches": 0}
    resumed = getattr(trial, "resume_step", None)
    state["stretches"] += 1
    save = getattr(trial, "save_checkpoint", None)
    try:
        for epoch in range(1 if resumed is None else resumed + 1, n_epochs + 1):
            time.sleep(epoch_s)
            state["value"] = learning_curve(x, epoch, n_epochs, noise)
            state["epochs_run"] += 1
            if save is not None:
                save(state, epoch)
            trial.report(state["value"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
    finally:
        trial.set_user_attr(SPAN_ATTR, [where_am_i(), state["start"], time.time()])
        trial.set_user_attr(EPOCHS_RUN_ATTR, state["epochs_run"])
        trial.set_user_attr(STRETCHES_ATTR, state["stretches"])
    return float(state["value"])


# ------------------------------------------------------------------------------------ a slow sampler
class SlowSampler(optuna.samplers.BaseSampler):
    """A sampler whose every ask costs CPU time growing with the completed trials, like GP-based ones.

    Delegates sampling to ``base`` and, when a trial is created, first burns ``seconds_per_trial ×
    n_complete`` seconds in a busy loop (holding the GIL between switch intervals, as CPU-bound model
    fitting does). Used where ``optuna.samplers.GPSampler`` cannot run (it needs torch).
    """

    def __init__(self, base: optuna.samplers.BaseSampler, seconds_per_trial: float) -> None:
        self._base = base
        self._seconds_per_trial = seconds_per_trial

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any) -> Any:
        return self._base.sample_independent(study, trial, name, distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        burn(self._seconds_per_trial * n_complete)
        self._base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()


def burn(seconds: float) -> None:
    """Busy-wait ``seconds`` of CPU in pure Python."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class TimedSampler(optuna.samplers.BaseSampler):
    """Delegates to ``base`` and adds up the time its calls take (one sampler, this process)."""

    def __init__(self, base: optuna.samplers.BaseSampler) -> None:
        self.base = base
        self.seconds = 0.0
        self.asks = 0

    def _timed(self, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - t0

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self._timed(self.base.infer_relative_search_space, study, trial)  # type: ignore[no-any-return]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, space: dict[str, Any]) -> dict[str, Any]:
        return self._timed(self.base.sample_relative, study, trial, space)  # type: ignore[no-any-return]

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any) -> Any:
        return self._timed(self.base.sample_independent, study, trial, name, distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.asks += 1
        self._timed(self.base.before_trial, study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._timed(self.base.after_trial, study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


def busy_reporter(trial: Any, seconds: float) -> float:
    """Report and ask ``should_prune()`` as fast as possible for ``seconds`` (a constant curve: never
    pruned), the heaviest load a trial can put on the channel."""
    trial.suggest_float("x", 0.0, 1.0)
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        trial.report(1.0, step)
        trial.should_prune()
        step += 1
    return 1.0
