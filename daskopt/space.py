"""Declared parameters -> Optuna distributions, and the check that enqueued values fit them.

The engine samples a declared space in the loop at ask time (no round trip per ``suggest_*``), so the
distributions built here are what every trial's parameters are drawn from. Enqueued values are checked
here, before the study starts, because Optuna would only reject them at the trial that uses them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from daskopt.errors import SpecError
from daskopt.spec.base import hint, show
from daskopt.spec.params import CategoricalParam, IntParam, Param


def to_distributions(space: Mapping[str, Param]) -> dict[str, BaseDistribution]:
    """One Optuna distribution per declared parameter, in declaration order."""
    return {name: _distribution(param) for name, param in space.items()}


def _distribution(param: Param) -> BaseDistribution:
    if isinstance(param, CategoricalParam):
        return CategoricalDistribution(param.choices)
    if isinstance(param, IntParam):
        return IntDistribution(param.low, param.high, log=param.log, step=param.step or 1)
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def check_enqueued(params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]) -> None:
    """Raise :class:`SpecError` (``key`` = the parameter) unless every value lies inside its distribution.

    A subset of the parameters is fine: Optuna samples the others.
    """
    for name, value in params.items():
        distribution = distributions.get(name)
        if distribution is None:
            raise SpecError(f"unknown parameter {name!r}; {hint(name, distributions, 'parameters')}", key=name)
        expected = _expected(value, distribution)
        if expected is not None:
            raise SpecError(f"got {show(value)}; expected {expected}", key=name)


def _expected(value: Any, distribution: BaseDistribution) -> str | None:
    """What ``distribution`` expects, when ``value`` is not inside it; ``None`` when it is."""
    if isinstance(distribution, CategoricalDistribution):
        return None if value in distribution.choices else f"one of {show(list(distribution.choices))}"
    if isinstance(distribution, IntDistribution):
        kind, fits = "an integer", isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(distribution, FloatDistribution):
        kind = "a number"
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        return None  # a kind to_distributions never builds; Optuna checks it when the trial runs
    low, high, step = distribution.low, distribution.high, distribution.step
    if not fits or not low <= value <= high:
        return f"{kind} in [{low}, {high}]"
    if step is not None and not math.isclose((value - low) / step, round((value - low) / step), abs_tol=1e-8):
        return f"{kind} in [{low}, {high}] on the grid low + k * {step}"
    return None
