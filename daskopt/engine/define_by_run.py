"""Define-by-run parameters of running trials: drawn while asking, taken locally, or answered in the loop.

A trial that calls ``suggest_*`` inside its objective needs its values from the loop's ``optuna.Trial``,
where the sampler's joint (relative) sample lives, so multivariate samplers still sample jointly. Two ways:

- :func:`joint_sample` draws the joint sample while asking (on the sampler thread, off the trial's start)
  and the assignment carries it; a suggest of the same distribution takes its value locally and sends a
  fire-and-forget ``PARAM``, which :meth:`DefineByRun.record` writes through Optuna's own ``suggest_*``;
- anything else is a ``SUGGEST`` round trip, which :meth:`DefineByRun.answer` runs through its own
  sampling gate (timed apart from asks, so a cheap suggest never queues behind a slow ask).
"""

from __future__ import annotations

import threading
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from daskopt.engine.sampling import SamplingGate
from daskopt.engine.state import JointValue, TrialRun
from daskopt.optuna_access import clear_trials_cache, fixed_params
from daskopt.protocol import events


class DefineByRun:
    """The loop's side of define-by-run suggestions."""

    def __init__(self) -> None:
        self._gate = SamplingGate()

    def answer(self, run: TrialRun, request: int, name: str, distribution_json: str) -> None:
        """A ``SUGGEST``: sample in the loop's trial, reply ``VALUE`` (or ``REFUSED`` with the reason)."""

        def suggest() -> Any:
            return suggest_in_loop(run.trial, name, json_to_distribution(distribution_json))

        def reply(value: Any, error: BaseException | None) -> None:
            if run.conn is None or run.finished:
                return
            if error is None:
                run.conn.send([events.VALUE, request, value])
            else:
                run.conn.send([events.REFUSED, request, events.error_info(error)])

        self._gate.run(suggest, reply)

    def record(self, run: TrialRun, name: str) -> None:
        """A ``PARAM``: the trial took ``joint[name]``; record it now, in message order (before any FINISH)."""
        joint = run.joint[name]
        value = suggest_in_loop(run.trial, name, joint.distribution)  # Optuna returns the joint value
        if value != joint.value:  # cannot happen while Optuna's _suggest prefers the relative sample
            raise RuntimeError(f"parameter {name!r}: the trial used {joint.value!r}, the study recorded {value!r}")

    def shutdown(self) -> None:
        self._gate.shutdown()


_fresh_for = threading.local()  # per thread: the trial whose suggests may use this thread's trial cache


def _refresh_trials_cache(trial: optuna.Trial) -> None:
    """Let the sampler read the study's trials afresh for a new trial on this thread.

    Samplers read the study's trials through a per-thread cache that Optuna clears only in ``ask`` and
    ``tell`` on the same thread. In plain Optuna a trial's suggests run on the thread that asked it; here
    they run on a thread that never asks or tells, whose cache would keep the first trials it ever saw
    (independent TPE then samples every later trial from a stale history). So the cache is cleared once
    per trial, as ``ask`` would clear it.
    """
    if getattr(_fresh_for, "trial", None) is trial:
        return
    clear_trials_cache(trial.study)
    _fresh_for.trial = trial


def suggest_in_loop(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """A define-by-run suggestion made on the loop's ``optuna.Trial`` through its public API."""
    _refresh_trials_cache(trial)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"unsupported distribution for {name!r}: {distribution!r}")


def joint_sample(trial: optuna.Trial) -> dict[str, JointValue]:
    """The trial's joint (relative) sample, drawn now, as values a define-by-run suggest may take locally.

    Optuna draws it lazily at the first suggest; calling this while asking (on the sampler thread) takes
    that cost off the trial's start, and shipping the values with the assignment saves one round trip
    per parameter. Left out, so that the loop's own ``suggest_*`` would take another branch than the
    joint value: enqueued (fixed) parameters, single-valued distributions, and parameters already set
    (a declared space). A trial whose fixed parameters cannot be read (another Optuna version) ships
    nothing, and every suggest asks the loop as before.
    """
    params = trial.relative_params
    fixed = fixed_params(trial)
    space = trial.relative_search_space or {}
    if not params or fixed is None:
        return {}
    joint: dict[str, JointValue] = {}
    taken = trial.params  # a declared space's values, already set by ask
    for name, value in params.items():
        distribution = space.get(name)
        if distribution is None or name in fixed or name in taken or distribution.single():
            continue
        plain = distribution.to_external_repr(distribution.to_internal_repr(value))  # no numpy types on the wire
        joint[name] = JointValue(distribution, distribution_to_json(distribution), plain)
    return joint
