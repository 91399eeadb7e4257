"""Tiny objectives for the engine tests, importable by worker processes."""

from __future__ import annotations

import math
import os
import signal
import sys
import time

import optuna


def quadratic(trial: optuna.Trial) -> float:
    """Plain Optuna objective with pruning: 3 suggests, 10 report/should_prune steps."""
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("y", 0, 10)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    offset = {"a": 0.0, "b": 1.0, "c": 2.0}[c]
    for step in range(10):
        trial.report(x**2 + offset + (10 - step), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x**2 + y + offset


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, 1 - x**2


def seed_echo(trial: optuna.Trial) -> float:
    """Returns the seed the engine exposed; reports so that a pruner could act on it."""
    x = trial.suggest_float("x", 0, 1)
    for step in range(3):
        trial.report(x, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(trial.user_attrs["seed"])


def reports_only(trial: optuna.Trial) -> None:
    trial.suggest_float("x", 0, 1)
    for step in range(1, 6):
        trial.report(float(step), step)
    return None


def reports_in_task(trial: optuna.Trial) -> None:
    """``reports_only``, recording which Dask task and scheduler ran the trial."""
    from distributed import get_worker

    worker = get_worker()
    trial.set_user_attr("task", str(worker.get_current_task()))
    trial.set_user_attr("scheduler", str(worker.scheduler.address))
    return reports_only(trial)


def returns(value: object):  # noqa: ANN201 - a factory of objectives
    def objective(trial: optuna.Trial) -> object:
        trial.suggest_float("x", 0, 1)
        return value

    return objective


def raises_on_odd(trial: optuna.Trial) -> float:
    x = trial.suggest_int("x", 0, 100)
    if trial.number % 2:
        raise ValueError(f"odd trial {trial.number}")
    return float(x)


def exits_on_trial_1(trial: optuna.Trial) -> float:
    """``sys.exit(3)`` in trial 1, as a script turned objective might do."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 1:
        sys.exit(3)
    return x


def kills_its_worker_once(trial: optuna.Trial) -> float:
    """SIGKILLs its own worker process on trial 1 (the first attempt only)."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 1 and "retry_of" not in trial.user_attrs:
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return x


def _reports_and_checks(trial: optuna.Trial, steps: int, step_s: float) -> float:
    x = trial.suggest_float("x", 0, 1)
    for step in range(steps):
        time.sleep(step_s)
        trial.report(x, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x


def slow_reporting(trial: optuna.Trial) -> float:
    """Runs for ~10 s unless told to stop; checks should_prune every 20 ms."""
    return _reports_and_checks(trial, steps=500, step_s=0.02)


def checks_pruning(trial: optuna.Trial) -> float:
    """Five steps of 0.1 s, each reported and checked: trials started together overlap on their worker."""
    return _reports_and_checks(trial, steps=5, step_s=0.1)


def sleeps_then_returns(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(0.05)
    return x


def sleeps_for(trial: optuna.Trial, seconds: float) -> float:
    x = trial.suggest_float("x", 0, 1)
    time.sleep(seconds)
    return x


def user_attrs(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0, 1)
    trial.set_user_attr("tag", {"worker_pid": os.getpid(), "list": [1, 2]})
    trial.set_constraint("c0", x - 0.5)
    assert trial.datetime_start is not None
    assert trial.params["x"] == x
    return x


def hangs_without_checking(trial: optuna.Trial) -> float:
    """Ignores cancellation: sleeps in one long call, as a stuck C extension or I/O wait would."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 0:
        time.sleep(3600)
    return x


def resumes_from_checkpoint(trial: optuna.Trial) -> float:
    """10 epochs, a checkpoint after each; the first attempt of trial 0 dies at epoch 5 (SIGKILL)."""
    x = trial.suggest_float("x", 0, 1)
    state = trial.checkpoint_dir / "state.txt"
    start = int(state.read_text()) if state.exists() else 0
    trial.set_user_attr("resumed_from", start)
    for epoch in range(start, 10):
        if trial.number == 0 and epoch == 5 and "retry_of" not in trial.user_attrs:
            os.kill(os.getpid(), signal.SIGKILL)
        state.write_text(str(epoch + 1))
        time.sleep(0.01)
    return x


def records_what_it_saw(trial: optuna.Trial) -> float:
    """Define-by-run with a range that widens from trial 8 on and a conditional parameter; stores what it got."""
    high = 10.0 if trial.number < 8 else 20.0
    seen = {
        "x": trial.suggest_float("x", -10.0, high),
        "n": trial.suggest_int("n", 1, 64, log=True),
        "kind": trial.suggest_categorical("kind", ["lin", "sq"]),
    }
    if seen["kind"] == "sq":
        seen["w"] = trial.suggest_float("w", 0.0, 1.0)
    trial.set_user_attr("seen", seen)
    return seen["x"] ** 2 + seen["n"] + seen.get("w", 0.0)


def define_by_run_with_attrs(trial: optuna.Trial) -> float:
    """Define-by-run suggests (one conditional), a user attribute, then reports with should_prune."""
    x = trial.suggest_float("x", -10, 10)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    extra = trial.suggest_int("extra", 0, 3) if kind == "b" else 0
    trial.set_user_attr("seen", trial.number)
    for step in range(8):
        trial.report(x**2 + extra + (8 - step), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x**2 + extra


ACCUMULATE_STEPS = 9


def accumulates(trial: optuna.Trial) -> float:
    """9 steps, each saving a checkpoint before its report; the value depends on x alone, however often the
    trial was paused, resumed or moved, and ``ran`` counts the steps actually computed. Runs unchanged in
    plain Optuna (no checkpoints there). ``kill_at`` (a user attribute) SIGKILLs the worker at that step on
    the first attempt."""
    x = trial.suggest_float("x", -3, 3)
    load = getattr(trial, "load_checkpoint", None)
    state = (load() if load else None) or {"total": 0.0, "ran": 0}
    resumed = getattr(trial, "resume_step", None)
    for step in range(0 if resumed is None else resumed + 1, ACCUMULATE_STEPS):
        state["total"] += (x - 1) ** 2 / (step + 1)
        state["ran"] += 1
        if trial.user_attrs.get("kill_at") == step and "retry_of" not in trial.user_attrs:
            os.kill(os.getpid(), signal.SIGKILL)
        if hasattr(trial, "save_checkpoint"):
            trial.save_checkpoint(state, step)
        trial.report(state["total"], step)
        if trial.should_prune():
            raise optuna.TrialPruned()
        time.sleep(0.01)
    trial.set_user_attr("ran", state["ran"])
    return float(state["total"])


SGD_STEPS = 30
SGD_NOISE = 1e-2


def noisy_sgd(trial: optuna.Trial) -> float:
    """The expected loss of SGD on a quadratic with gradient noise, a step per report: a large learning rate
    is best early, a small one late (the kind of problem PBT's schedules win). Deterministic; checkpoints
    before each report and resumes from ``load_checkpoint()``; returns log10 of the final loss."""
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    state = trial.load_checkpoint() or {"v": 1.0, "ran": 0}  # type: ignore[attr-defined]
    start = 0 if trial.resume_step is None else trial.resume_step + 1  # type: ignore[attr-defined]
    for step in range(start, SGD_STEPS):
        state["v"] = (1 - lr) ** 2 * state["v"] + lr * lr * SGD_NOISE
        state["ran"] += 1
        trial.save_checkpoint(state, step)  # type: ignore[attr-defined]
        trial.report(math.log10(state["v"]), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("ran", state["ran"])
    return math.log10(state["v"])


def records_its_nice(trial: optuna.Trial) -> float:
    """Returns the nice value of the thread the objective runs on (its worker process's priority)."""
    import threading

    trial.suggest_float("x", 0, 1)
    return float(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))


def records_its_profiler(trial: optuna.Trial) -> float:
    """1.0 when Dask's profiler runs on the objective's worker, else 0.0."""
    from distributed import get_worker

    trial.suggest_float("x", 0, 1)
    return float("profile" in get_worker().periodic_callbacks)
