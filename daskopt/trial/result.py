"""Turn what an objective returned into objective values, or into a reason to FAIL the trial.

This runs on the worker, where the returned object still exists, so the failure message can say exactly
what came back ("returned 'abc' (str); expected a float") instead of a pickling error in the loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class InvalidReturn(ValueError):
    """The objective's return value cannot be an objective value."""


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _as_float(value: Any, expected: str) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise InvalidReturn(f"objective returned {_describe(value)}; expected {expected}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidReturn(f"objective returned {_describe(value)}; expected {expected}") from None
    if not math.isfinite(number):
        raise InvalidReturn(f"objective returned {number}; expected a finite float")
    return number


def objective_values(
    returned: Any,
    n_objectives: int,
    reported: Sequence[float],
    report_last_n: int | None,
) -> list[float]:
    """Values to ``tell`` for a completed trial.

    ``None`` means "use the mean of the last ``report_last_n`` reported values" when that option is set
    (the seeds' workflow: the objective only reports per epoch). Raises :class:`InvalidReturn` with a
    one-line message otherwise.
    """
    if returned is None:
        if report_last_n and reported:
            tail = list(reported)[-report_last_n:]
            return [_as_float(sum(tail) / len(tail), "a float")]
        if reported:  # it reported, but nothing says to use the reports
            raise InvalidReturn(
                f"objective returned None after {len(reported)} report(s); expected a float, or set report_last_n "
                "to use the mean of the last reports"
            )
        hint = "" if report_last_n else " (or set report_last_n to use the mean of the last reports)"
        raise InvalidReturn(f"objective returned None without reporting any value; expected a float{hint}")
    if n_objectives == 1:
        if isinstance(returned, Sequence) and not isinstance(returned, str):
            if len(returned) != 1:
                raise InvalidReturn(
                    f"objective returned {_describe(returned)}; expected a single float for a single-objective study"
                )
            returned = returned[0]
        return [_as_float(returned, "a float")]
    if not isinstance(returned, Sequence) or isinstance(returned, str):
        raise InvalidReturn(f"objective returned {_describe(returned)}; expected a sequence of {n_objectives} floats")
    if len(returned) != n_objectives:
        raise InvalidReturn(
            f"objective returned {len(returned)} values; expected {n_objectives} (one per study direction)"
        )
    return [_as_float(v, f"a sequence of {n_objectives} floats") for v in returned]
