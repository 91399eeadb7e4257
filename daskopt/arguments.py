"""``optimize()``'s arguments checked before anything starts: one clear error naming the argument.

A wrong value found only inside the loop would cost a cluster start first, or fail every trial with an
error that no longer names what the caller passed (``catch="ValueError"`` failing each trial with an
``AttributeError``), so every argument whose type or range can be checked is checked here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from distributed import Client
from optuna.distributions import BaseDistribution

CHANNELS = ("auto", "direct", "relay")  # the trial channel's paths (daskopt/engine/trial_channel.py)


def _fail(name: str, expected: str, value: Any, error: type[Exception] = ValueError, where: str = "") -> None:
    raise error(f"{where or 'daskopt.optimize'}: {name} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def check_int(name: str, value: Any, minimum: int, *, optional: bool = False, where: str = "") -> None:
    expected = f"an int >= {minimum}" + (" or None" if optional else "")
    if value is None and optional:
        return
    if not _is_int(value):
        _fail(name, expected, value, TypeError, where)
    if value < minimum:
        _fail(name, expected, value, where=where)


def check_seconds(name: str, value: Any, *, optional: bool = False, zero: bool = False, where: str = "") -> None:
    expected = f"a number of seconds {'>= 0' if zero else '> 0'}" + (" or None" if optional else "")
    if value is None and optional:
        return
    if not _is_number(value):
        _fail(name, expected, value, TypeError, where)
    if value < 0 or (value == 0 and not zero):
        _fail(name, expected, value, where=where)


def check_bool(name: str, value: Any, *, where: str = "") -> None:
    if not isinstance(value, bool):
        _fail(name, "True or False", value, TypeError, where)


def check_catch(catch: Any) -> tuple[type[BaseException], ...]:
    """``catch`` as a tuple of exception classes (a single class is accepted, as Optuna does)."""
    items = (catch,) if isinstance(catch, type) else catch
    try:
        items = tuple(items)
    except TypeError:
        _fail("catch", "an exception class or a tuple of them", catch, TypeError)
    if isinstance(catch, str) or not all(isinstance(c, type) and issubclass(c, BaseException) for c in items):
        _fail("catch", "an exception class or a tuple of them (e.g. (ValueError,))", catch, TypeError)
    return items


def check_callbacks(callbacks: Any) -> tuple[Any, ...]:
    """``callbacks`` as a tuple of callables (read once: a generator is accepted)."""
    expected = "a sequence of callables callback(study, frozen_trial)"
    if isinstance(callbacks, str) or not hasattr(callbacks, "__iter__"):
        _fail("callbacks", expected, callbacks, TypeError)
    items = tuple(callbacks)
    if not all(map(callable, items)):
        _fail("callbacks", expected, callbacks, TypeError)
    return items


def check_optimize_arguments(arguments: Mapping[str, Any]) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first plain argument of ``optimize`` that is wrong (the
    settings objects check themselves, :mod:`daskopt.settings`)."""
    a = arguments
    if not callable(a["objective"]):
        _fail("objective", "a callable taking a trial", a["objective"], TypeError)
    if a["client"] is not None and not isinstance(a["client"], Client):
        _fail(
            "client", "a dask.distributed.Client or None (connect with Client(address) first)", a["client"], TypeError
        )
    check_int("n_trials", a["n_trials"], 1, optional=True)
    check_int("n_concurrent", a["n_concurrent"], 1, optional=True)
    space = a["search_space"]
    if space is not None and (
        not isinstance(space, Mapping)
        or not all(isinstance(k, str) and isinstance(v, BaseDistribution) for k, v in space.items())
    ):
        _fail(
            "search_space",
            'a dict of name -> optuna distribution, e.g. {"lr": FloatDistribution(1e-5, 1e-1, log=True)}',
            space,
            TypeError,
        )
    check_bool("show_progress_bar", a["show_progress_bar"])
    if a["channel"] not in CHANNELS:
        _fail("channel", " or ".join(map(repr, CHANNELS)), a["channel"])
