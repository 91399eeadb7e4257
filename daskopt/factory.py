"""Optuna samplers, pruners and storages from their specs, through name -> class tables.

A table (not ``getattr(optuna.samplers, ...)``) keeps the accepted names short, documented and stable, and
lets every error list them. Option names are checked against the constructor's signature before calling
it, so a typo is reported as ``sampler.options.n_startup_trails`` rather than as a ``TypeError``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from optuna import pruners, samplers
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from daskopt.errors import SpecError
from daskopt.schedulers import PB2, PBT, PromotionASHA, PromotionHyperband, Scheduler
from daskopt.spec.base import hint, show
from daskopt.spec.models import PrunerSection, SamplerSection, SchedulerSection
from daskopt.spec.values import resolve_storage_url


def _patient_median(
    patience: int,
    min_delta: float = 0.0,
    n_startup_trials: int = 5,
    n_warmup_steps: int = 0,
    interval_steps: int = 1,
    n_min_trials: int = 1,
) -> pruners.PatientPruner:
    """A ``PatientPruner`` around a ``MedianPruner``: one flat ``[pruner.options]`` table configures both."""
    median = pruners.MedianPruner(n_startup_trials, n_warmup_steps, interval_steps, n_min_trials=n_min_trials)
    return pruners.PatientPruner(median, patience=patience, min_delta=min_delta)


SAMPLERS: dict[str, Callable[..., samplers.BaseSampler]] = {
    "tpe": samplers.TPESampler,
    "random": samplers.RandomSampler,
    "grid": samplers.GridSampler,
    "cmaes": samplers.CmaEsSampler,
    "gp": samplers.GPSampler,
    "qmc": samplers.QMCSampler,
    "nsgaii": samplers.NSGAIISampler,
    "nsgaiii": samplers.NSGAIIISampler,
    "bruteforce": samplers.BruteForceSampler,
}

PRUNERS: dict[str, Callable[..., pruners.BasePruner]] = {
    "none": pruners.NopPruner,
    "median": pruners.MedianPruner,
    "percentile": pruners.PercentilePruner,
    "asha": pruners.SuccessiveHalvingPruner,
    "successive_halving": pruners.SuccessiveHalvingPruner,
    "hyperband": pruners.HyperbandPruner,
    "wilcoxon": pruners.WilcoxonPruner,
    "threshold": pruners.ThresholdPruner,
    "patient": _patient_median,
}


def make_sampler(spec: SamplerSection, distributions: Mapping[str, BaseDistribution]) -> samplers.BaseSampler:
    """The sampler ``spec`` names; ``grid`` without a ``search_space`` option gets one from ``distributions``."""
    options = dict(spec.options)
    if spec.name == "grid" and "search_space" not in options:
        options["search_space"] = grid_search_space(distributions)
    return _build("sampler", SAMPLERS, spec.name, options)


def make_pruner(spec: PrunerSection) -> pruners.BasePruner:
    """The pruner ``spec`` names, built with its options."""
    return _build("pruner", PRUNERS, spec.name, dict(spec.options))


SCHEDULERS: dict[str, Callable[..., Scheduler]] = {
    "asha-promotion": PromotionASHA,
    "hyperband-promotion": PromotionHyperband,
    "pbt": PBT,
    "pb2": PB2,
}


def make_scheduler(spec: SchedulerSection | None, pruner: PrunerSection) -> Scheduler | None:
    """The scheduler ``spec`` names, built with its options; one beside a ``[pruner]`` is an error."""
    if spec is None:
        return None
    if pruner.name != "none":
        raise SpecError(
            f"[scheduler] {spec.name!r} and [pruner] {pruner.name!r} would both decide when trials stop; a scheduler "
            "decides alone (it also pauses, resumes and clones trials): remove the [pruner] section",
            key="scheduler",
        )
    return _build("scheduler", SCHEDULERS, spec.name, dict(spec.options))  # type: ignore[no-any-return]


def make_storage(url: str) -> BaseStorage | str | None:
    """What ``optuna.create_study(storage=...)`` takes for ``url``: a storage object, a URL, or ``None``
    (in memory). Relative paths are taken from the current directory; a loaded spec's are already absolute.
    The folder of a journal or SQLite file is created, as Optuna would fail on a missing one.
    """
    try:
        url = resolve_storage_url(url, Path.cwd())
    except SpecError as err:
        raise SpecError(err.detail, key="storage.url") from None
    if url == "memory":
        return None
    file = storage_file(url)
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError(
                f"cannot create the folder {file.parent}: {exc.strerror or exc}", key="storage.url"
            ) from None
    if url.startswith("journal:"):
        path = url.removeprefix("journal:")
        # A driver SIGKILLed while writing leaves the lock behind; a live writer holds it for milliseconds,
        # so a stale lock is broken after 3 s instead of Optuna's default 30 s.
        lock = JournalFileSymlinkLock(path, grace_period=3)
        try:
            return JournalStorage(JournalFileBackend(path, lock_obj=lock))
        except OSError as exc:
            raise SpecError(f"cannot use {url}: {exc.strerror or exc}", key="storage.url") from None
    return url


def storage_file(url: str) -> Path | None:
    """The file a (resolved) journal or SQLite URL names; ``None`` for a database server or memory."""
    for prefix in ("journal:", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    return None


def grid_search_space(distributions: Mapping[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of every declared parameter, for ``GridSampler``; a float needs a step to have a grid."""
    if not distributions:
        raise SpecError(
            "missing; the grid sampler needs parameters in [space] or sampler.options.search_space",
            key="sampler.options.search_space",
        )
    return {name: _grid_values(name, distribution) for name, distribution in distributions.items()}


def _grid_values(name: str, distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        count = math.floor((distribution.high - distribution.low) / distribution.step + 1e-9) + 1
        return [distribution.low + index * distribution.step for index in range(count)]
    raise SpecError(
        f"missing; the grid sampler needs a step for {name!r}: add step to space.{name} or choose another sampler",
        key=f"space.{name}.step",
    )


def _build(section: str, table: Mapping[str, Callable[..., Any]], name: str, options: dict[str, Any]) -> Any:
    """Check ``options`` against the signature of ``table[name]``, then call it."""
    builder = table.get(name)
    if builder is None:
        raise SpecError(f"unknown {section} {name!r}; {hint(name, table, 'names')}", key=f"{section}.name")
    parameters = [
        parameter
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    accepted = [parameter.name for parameter in parameters]
    for option in options:
        if option not in accepted:
            message = f"{section} {name!r} takes no option {option!r}; {hint(option, accepted, 'options')}"
            raise SpecError(message, key=f"{section}.options.{option}")
    for parameter in parameters:
        if parameter.default is parameter.empty and parameter.name not in options:
            message = f"missing; {section} {name!r} needs option {parameter.name!r} in [{section}.options]"
            raise SpecError(message, key=f"{section}.options.{parameter.name}")
    try:
        return builder(**options)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{name} rejected options {show(options)}: {err}", key=f"{section}.options") from err
