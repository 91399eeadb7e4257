"""Every use of Optuna's private names, in one place.

daskopt drives a study from outside Optuna's own ``optimize`` loop, and a few things that loop does have
no public API: writing an attribute of a trial by its id, the flag ``study.stop()`` sets, the per-thread
trial cache that ``ask``/``tell`` clear, an enqueued trial's fixed parameters, the frozen trial the pruner
is handed, a distribution's range check, a tell without its deep copy of the result, and the threshold
function of the percentile pruners (cached per step between finished trials, see
:mod:`daskopt.engine.pruning`). Each is wrapped here with what it is for, so that an Optuna release that
moves one breaks one function, found by the tests that run against both ends of the supported range
(pyproject.toml pins it).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a live trial (storage calls take ids, not numbers)."""
    return int(trial._trial_id)


def set_trial_system_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    study._storage.set_trial_system_attr(trial_id, key, value)


def set_trial_user_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    """Write a user attribute of a trial that no live ``optuna.Trial`` holds (a stored one)."""
    study._storage.set_trial_user_attr(trial_id, key, value)


def stored_trial_id(trial: FrozenTrial) -> int:
    return int(trial._trial_id)


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """One stored trial by its number, without reading the others."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def all_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial, without copies and straight from the storage (no study-level caching)."""
    return study._storage.get_all_trials(study._study_id, deepcopy=False)


def tell(
    study: optuna.Study, trial: optuna.Trial, values: list[float] | None, state: optuna.trial.TrialState
) -> FrozenTrial:
    """``study.tell(trial, values, state, skip_if_finished=True)``, returning the stored frozen trial as
    ``Study.optimize`` does, not the deep copy ``Study.tell`` makes: a copy of every report and parameter,
    80% of a tell's time in the loop (cProfile, 2,000 trials). Read-only: the engine's own uses only read
    it, and callbacks get a copy each, as in ``optimize``."""
    _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state, skip_if_finished=True)
    return study._storage.get_trial(trial._trial_id)


def stop_requested(study: optuna.Study) -> bool:
    """Whether ``study.stop()`` was called (by a callback, a sampler) during this optimize call."""
    return bool(getattr(study, "_stop_flag", False))


def set_in_optimize(study: optuna.Study, value: bool) -> None:
    """Mark ``study`` as inside (or out of) an optimize call, as Optuna's own ``optimize`` does, so samplers
    and callbacks can call ``study.stop()``; leaving clears a stop request for the next call."""
    local = getattr(study, "_thread_local", None)
    if local is not None:
        local.in_optimize_loop = value
    if not value and hasattr(study, "_stop_flag"):
        study._stop_flag = False


def clear_trials_cache(study: optuna.Study) -> None:
    """Drop this thread's cached list of the study's trials (what ``ask`` and ``tell`` do on their thread)."""
    local = getattr(study, "_thread_local", None)
    if local is not None and hasattr(local, "cached_all_trials"):
        local.cached_all_trials = None


def fixed_params(trial: optuna.Trial) -> dict[str, Any] | None:
    """An enqueued trial's fixed parameters (``None`` where this Optuna does not expose them)."""
    fixed = getattr(trial, "_fixed_params", None)
    return None if fixed is None else dict(fixed)


def latest_frozen(trial: optuna.Trial) -> FrozenTrial | None:
    """The frozen trial ``should_prune`` hands the pruner, reports included (``None``: not available)."""
    get = getattr(trial, "_get_latest_trial", None)
    return None if get is None else get()


def reported_values(trial: optuna.Trial) -> dict[int, float] | None:
    """The running trial's reports by step, as ``report`` keeps them (read only: it is the trial's own dict);
    ``None`` where this Optuna keeps them elsewhere."""
    values = getattr(getattr(trial, "_cached_frozen_trial", None), "intermediate_values", None)
    return values if isinstance(values, dict) else None


def enqueued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a WAITING trial was enqueued with."""
    return dict(trial.system_attrs.get("fixed_params", {}))


def suggest_declared(trial: optuna.Trial, space: dict[str, BaseDistribution]) -> None:
    """Sample ``space`` into a trial just asked: what ``study.ask(fixed_distributions=space)`` does after it
    creates the trial, done apart so that a sampler's error leaves the caller the trial to fail."""
    from optuna.distributions import _convert_old_distribution_to_new_distribution

    for name, distribution in space.items():
        trial._suggest(name, _convert_old_distribution_to_new_distribution(distribution))


def trial_left_by_failed_ask(error: BaseException) -> int | None:
    """The id of the trial ``study.ask`` had created when ``error`` came out of it (a sampler's
    ``before_trial`` raising in the trial's constructor), read from ``ask``'s frame in the traceback; else
    ``None``. Optuna leaves that trial RUNNING for good."""
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "ask" and frame.f_globals.get("__name__") == "optuna.study.study":
            trial_id = frame.f_locals.get("trial_id")
            return trial_id if isinstance(trial_id, int) else None
        tb = tb.tb_next
    return None


def fail_stored_trial(study: optuna.Study, trial_id: int, user_attrs: dict[str, Any]) -> None:
    """Record a trial the engine holds no ``optuna.Trial`` for as FAIL, with ``user_attrs`` (why)."""
    for key, value in user_attrs.items():
        study._storage.set_trial_user_attr(trial_id, key, value)
    study._storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (external representation) lies in ``distribution``'s range and steps."""
    return bool(distribution._contains(distribution.to_internal_repr(value)))


# The engine's cache of percentile pruners' thresholds (``MedianPruner``, ``PercentilePruner``), set only while
# the engine's own pruner call runs on its thread, so every other caller of the function is untouched.
_percentile_cache: contextvars.ContextVar[Callable[..., float] | None] = contextvars.ContextVar(
    "daskopt_percentile_cache", default=None
)


def install_percentile_cache() -> bool:
    """Route ``optuna.pruners._percentile``'s threshold function through :func:`percentile_cache` when one is
    active; ``False`` where this Optuna has no such function (decisions then take the uncached path)."""
    module = getattr(optuna.pruners, "_percentile", None)
    original = getattr(module, "_get_percentile_intermediate_result_over_trials", None)
    if original is None:
        return False
    if getattr(original, "daskopt_cached", False):
        return True

    def threshold(completed_trials: list[FrozenTrial], *args: Any) -> float:
        cached = _percentile_cache.get()
        return original(completed_trials, *args) if cached is None else cached(original, completed_trials, *args)

    threshold.daskopt_cached = True  # type: ignore[attr-defined]
    module._get_percentile_intermediate_result_over_trials = threshold  # type: ignore[union-attr]
    return True


@contextlib.contextmanager
def percentile_cache(lookup: Callable[..., float]) -> Iterator[None]:
    """While inside, the percentile threshold is computed by ``lookup(original, completed_trials, *args)``."""
    token = _percentile_cache.set(lookup)
    try:
        yield
    finally:
        _percentile_cache.reset(token)
