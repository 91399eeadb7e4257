"""Objectives for the Trial API conformance tests, importable by worker processes.

Each exercises one part of ``optuna.Trial`` and writes what it saw inside the trial into user attributes,
so that the storage of a plain Optuna run and of a daskopt run can be compared. Objectives that take
arguments are bound with ``functools.partial`` (picklable by reference).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import optuna
from optuna.distributions import distribution_to_json


def _exception_name(call: Any) -> str | None:
    """Run ``call()``; the name of the exception it raised, or ``None``."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - recorded for the comparison
        return type(exc).__name__
    return None


# ------------------------------------------------------------------------------------- suggest
def suggest_variants(trial: optuna.Trial) -> float:
    """Every ``suggest_*`` form; records the returned types and what ``params``/``distributions`` show."""
    values: dict[str, Any] = {
        "f": trial.suggest_float("f", -1.0, 1.0),
        "f_int_bounds": trial.suggest_float("f_int_bounds", 0, 3),
        "f_log": trial.suggest_float("f_log", 1e-4, 1.0, log=True),
        "f_step": trial.suggest_float("f_step", 0.0, 1.0, step=0.25),
        "i": trial.suggest_int("i", -5, 5),
        "i_log": trial.suggest_int("i_log", 1, 1024, log=True),
        "i_step": trial.suggest_int("i_step", 0, 10, step=3),  # high not on the grid: Optuna makes it 9
        "c_str": trial.suggest_categorical("c_str", ["a", "b", "c"]),
        "c_int": trial.suggest_categorical("c_int", [1, 2, 3]),
        "c_mixed": trial.suggest_categorical("c_mixed", [None, True, 2.5, "x"]),
        "c_none": trial.suggest_categorical("c_none", [None]),
        "c_bool": trial.suggest_categorical("c_bool", (True, False)),
        "single_f": trial.suggest_float("single_f", 2.0, 2.0),
        "single_i": trial.suggest_int("single_i", 7, 7),
        "uniform": trial.suggest_uniform("uniform", 0.0, 2.0),
        "loguniform": trial.suggest_loguniform("loguniform", 1e-3, 1.0),
        "discrete": trial.suggest_discrete_uniform("discrete", 0.0, 1.0, 0.1),
    }
    trial.set_user_attr("types", {name: type(value).__name__ for name, value in values.items()})
    trial.set_user_attr("returned", values)
    # asking again for a parameter already set returns its value, even with another (compatible) range
    trial.set_user_attr("same_again", trial.suggest_float("f", -1.0, 1.0) == values["f"])
    trial.set_user_attr("same_other_range", trial.suggest_int("i", 0, 100) == values["i"])
    trial.set_user_attr("seen_params", trial.params)
    trial.set_user_attr(
        "seen_distributions", {name: distribution_to_json(d) for name, d in trial.distributions.items()}
    )
    return float(values["f"] + values["i"])


def _redefine_kind(trial: optuna.Trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_int("x", 0, 1)


def _redefine_choices(trial: optuna.Trial) -> None:
    trial.suggest_categorical("c", ["a", "b"])
    trial.suggest_categorical("c", ["a", "z"])


def _redefine_int_as_categorical(trial: optuna.Trial) -> None:
    trial.suggest_int("n", 0, 3)
    trial.suggest_categorical("n", [0, 1, 2, 3])


SUGGEST_ERRORS = {
    "float_low_above_high": lambda t: t.suggest_float("x", 1.0, 0.0),
    "int_low_above_high": lambda t: t.suggest_int("n", 5, 1),
    "float_log_from_zero": lambda t: t.suggest_float("x", 0.0, 1.0, log=True),
    "float_log_and_step": lambda t: t.suggest_float("x", 0.1, 1.0, step=0.1, log=True),
    "int_log_and_step": lambda t: t.suggest_int("n", 1, 9, step=2, log=True),
    "int_step_zero": lambda t: t.suggest_int("n", 0, 10, step=0),
    "float_step_negative": lambda t: t.suggest_float("x", 0.0, 1.0, step=-0.1),
    "empty_choices": lambda t: t.suggest_categorical("c", []),
    "redefine_kind": _redefine_kind,
    "redefine_choices": _redefine_choices,
    "redefine_int_as_categorical": _redefine_int_as_categorical,
}


def suggest_error(trial: optuna.Trial, case: str) -> float:
    """A parameter first suggested correctly, then one ``SUGGEST_ERRORS[case]`` that Optuna rejects."""
    x = trial.suggest_float("ok", 0.0, 1.0)
    SUGGEST_ERRORS[case](trial)
    return x


# ------------------------------------------------------------------------------------- report
REPORT_CASES: dict[str, list[tuple[Any, Any]]] = {  # (step, value) in the order reported
    "float32_value": [(0, np.float32(0.5)), (1, np.float64(0.25))],
    "numpy_int_value": [(0, np.int64(3)), (1, 7)],
    "numeric_string_value": [(0, "0.25")],
    "nan_value": [(0, math.nan), (1, 1.0)],
    "string_value": [(0, "abc"), (1, 1.0)],
    "none_value": [(0, None), (1, 1.0)],
    "list_value": [(0, [1.0]), (1, 1.0)],
    "numpy_int64_step": [(np.int64(2), 0.5), (np.int64(3), 0.25)],
    "numpy_int32_step": [(np.int32(4), 0.5)],
    "whole_float_step": [(4.0, 0.5)],
    "negative_step": [(-1, 0.5), (0, 1.0)],
    "none_step": [(None, 0.5), (0, 1.0)],
    "string_step": [("abc", 0.5), (0, 1.0)],
    "duplicate_step": [(0, 1.0), (0, 2.0), (1, 3.0), (1, 4.0)],
    "out_of_order_steps": [(5, 0.5), (2, 0.2), (8, 0.8), (0, 0.0)],
}


def report_case(trial: optuna.Trial, case: str, raise_errors: bool = False) -> float:
    """Report ``REPORT_CASES[case]``; each report's exception type (or ``None``) goes to a user attribute,
    or, with ``raise_errors``, the first exception fails the trial."""
    errors = []
    for step, value in REPORT_CASES[case]:
        if raise_errors:
            trial.report(value, step)
        else:
            errors.append(_exception_name(lambda step=step, value=value: trial.report(value, step)))
    trial.set_user_attr("report_errors", errors)
    return 0.0


# -------------------------------------------------------------------------------- should_prune
def learning_curve(trial: optuna.Trial, steps: int = 6, check: bool = True) -> float:
    """x in [0, 1]; reports a curve that is worse for x far from 0.3; records every ``should_prune``
    answer (before any report too) without acting on it."""
    x = trial.suggest_float("x", 0.0, 1.0)
    answers = [trial.should_prune()]  # nothing reported yet
    value = 0.0
    for step in range(steps):
        value = (x - 0.3) ** 2 + 1.0 / (step + 1)
        trial.report(value, step)
        if check:
            answers.append(trial.should_prune())
    trial.set_user_attr("answers", answers)
    return value


def prunes_itself(trial: optuna.Trial, steps: int = 6) -> float:
    """The usual loop: report, and raise ``TrialPruned`` when ``should_prune()`` says so."""
    x = trial.suggest_float("x", 0.0, 1.0)
    value = 0.0
    for step in range(steps):
        value = (x - 0.3) ** 2 + 1.0 / (step + 1)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")
    return value


def raises_pruned_without_reports(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    raise optuna.TrialPruned("nothing reported")


def out_of_order_prune(trial: optuna.Trial) -> float:
    """Trial 0 reports a flat curve. Later trials report a bad value at a late step, then a very good one
    at an earlier step: Optuna's ``should_prune`` after each sees every value reported so far."""
    trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        for step in range(10):
            trial.report(1.0, step)
        return 1.0
    answers = []
    trial.report(5.0, 9)
    answers.append(trial.should_prune())
    trial.report(0.0, 3)  # earlier step, better than the others' median
    answers.append(trial.should_prune())
    trial.set_user_attr("answers", answers)
    return 0.5


def reports_slowly(trial: optuna.Trial, checks: str = "never", steps: int = 5) -> float:
    """Reports ``steps`` values some milliseconds apart (an epoch each); asks ``should_prune`` ``never``,
    only at the ``last`` step, or at ``every`` step (and records the answers)."""
    x = trial.suggest_float("x", 0.0, 1.0)
    answers = []
    value = 0.0
    for step in range(steps):
        time.sleep(0.01)
        value = (x - 0.3) ** 2 + 1.0 / (step + 1)
        trial.report(value, step)
        if checks == "every" or (checks == "last" and step == steps - 1):
            answers.append(trial.should_prune())
    trial.set_user_attr("answers", answers)
    return value


# ------------------------------------------------------------------------------ attributes
def user_attrs(trial: optuna.Trial) -> float:
    """Sets JSON-like values, overwrites one, and records what ``user_attrs`` shows inside the trial."""
    trial.set_user_attr("seen_at_start", trial.user_attrs)
    trial.set_user_attr("int", 1)
    trial.set_user_attr("float", 0.5)
    trial.set_user_attr("str", "text")
    trial.set_user_attr("none", None)
    trial.set_user_attr("bool", True)
    trial.set_user_attr("list", [1, "two", 3.0, None])
    trial.set_user_attr("nested", {"a": [1, 2], "b": {"c": "d"}})
    trial.set_user_attr("overwritten", "first")
    trial.set_user_attr("overwritten", "second")
    trial.set_user_attr("numpy_float", np.float64(0.25))  # a float subclass
    seen = trial.user_attrs
    trial.set_user_attr("seen", seen)
    trial.set_user_attr("copy_is_private", _mutating_user_attrs_copy_is_private(trial))
    return trial.suggest_float("x", 0.0, 1.0)


def _mutating_user_attrs_copy_is_private(trial: optuna.Trial) -> bool:
    copy = trial.user_attrs
    copy["int"] = 99
    return trial.user_attrs["int"] == 1


def trial_properties(trial: optuna.Trial) -> float:
    """``number``, ``datetime_start``, the ``BaseTrial`` type and which attributes a trial exposes."""
    x = trial.suggest_float("x", 0.0, 1.0)
    start = trial.datetime_start
    trial.set_user_attr("number", trial.number)
    trial.set_user_attr("number_type", type(trial.number).__name__)
    trial.set_user_attr("datetime_start", start.isoformat() if start is not None else None)
    trial.set_user_attr("datetime_start_type", type(start).__name__)
    trial.set_user_attr("is_base_trial", isinstance(trial, optuna.trial.BaseTrial))
    exposed = {name: hasattr(trial, name) for name in ("system_attrs", "constraints", "set_constraint")}
    trial.set_user_attr("exposes", exposed)
    trial.set_user_attr("params_is_copy", _params_copy_is_private(trial))
    return x


def _params_copy_is_private(trial: optuna.Trial) -> bool:
    params = trial.params
    params["x"] = -1.0
    distributions = trial.distributions
    distributions.pop("x")
    return trial.params["x"] != -1.0 and "x" in trial.distributions


# ----------------------------------------------------------------------------- constraints
def set_constraints(trial: optuna.Trial) -> float:
    """Optuna 5's ``set_constraint``: two constraints, a repeat (ignored), NaN (ValueError) and a string."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.set_constraint("c0", x - 0.5)
    trial.set_constraint("c1", np.float32(-1.0))
    errors = [
        _exception_name(lambda: trial.set_constraint("c0", 10.0)),  # already set: kept
        _exception_name(lambda: trial.set_constraint("c2", math.nan)),
        _exception_name(lambda: trial.set_constraint("c3", "high")),
    ]
    trial.set_user_attr("errors", errors)
    trial.set_user_attr("seen_constraints", trial.constraints)
    return x


def constrained(trial: optuna.Trial) -> float:
    """For ``constraints_func``: the constraint values travel as user attributes."""
    x = trial.suggest_float("x", -2.0, 2.0)
    y = trial.suggest_float("y", -2.0, 2.0)
    trial.set_user_attr("constraint", [x + y - 1.0, x - 1.5])
    return (x - 1.0) ** 2 + (y - 1.0) ** 2


def constraints_from_user_attrs(trial: optuna.trial.FrozenTrial) -> list[float]:
    return list(trial.user_attrs["constraint"])


# -------------------------------------------------------------------------- multi-objective
def multi_objective(trial: optuna.Trial, returns: str = "tuple") -> Any:
    """Two objectives; ``report``/``should_prune`` raise ``NotImplementedError`` (recorded)."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr(
        "errors",
        [_exception_name(lambda: trial.report(x, 0)), _exception_name(lambda: trial.should_prune())],
    )
    if returns == "tuple":
        return x, 1.0 - x**2
    if returns == "list":
        return [x, 1.0 - x**2]
    if returns == "array":
        return np.array([x, 1.0 - x**2])
    if returns == "three":
        return x, x, x
    if returns == "one":
        return x
    if returns == "nan":
        return x, math.nan
    raise AssertionError(returns)


def multi_objective_reports(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.report(x, 0)  # NotImplementedError fails the trial
    return x, x


# ------------------------------------------------------------------------------- returns
def returns(trial: optuna.Trial, kind: str) -> Any:
    x = trial.suggest_float("x", 0.0, 1.0)
    return {
        "float": x,
        "int": 3,
        "float32": np.float32(0.5),
        "numpy_int": np.int64(4),
        "zero_d_array": np.array(0.75),
        "list_of_one": [x],
        "tuple_of_one": (x,),
        "none": None,
        "string": "abc",
        "nan": math.nan,
        "two_values": (x, x),
        "dict": {"x": x},
        "inf": math.inf,
        "minus_inf": -math.inf,
        "true": True,
    }[kind]


# ------------------------------------------------------------------------------- exceptions
def raises_on_odd(trial: optuna.Trial) -> float:
    x = trial.suggest_int("x", 0, 100)
    if trial.number % 2:
        raise ValueError(f"odd trial {trial.number}")
    return float(x)


def raises_per_number(trial: optuna.Trial) -> float:
    """Trial 1 raises ValueError, trial 2 KeyError, others complete."""
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 1:
        raise ValueError("one")
    if trial.number == 2:
        raise KeyError("two")
    return x


# ----------------------------------------------------------------------------- trial.study
def reads_study(trial: optuna.Trial) -> float:
    """What ``trial.study`` shows: name, direction(s) and user attributes."""
    x = trial.suggest_float("x", 0.0, 1.0)
    study = trial.study
    seen: dict[str, Any] = {
        "study_name": study.study_name,
        "directions": [d.name for d in study.directions],
        "user_attrs": study.user_attrs,
    }
    try:
        seen["direction"] = study.direction.name
    except Exception as exc:  # noqa: BLE001 - a multi-objective study has no single direction
        seen["direction"] = type(exc).__name__
    trial.set_user_attr("seen", seen)
    if len(seen["directions"]) > 1:
        return x, x  # type: ignore[return-value]
    return x


def study_attributes(trial: optuna.Trial) -> float:
    """Which of the study's attributes the trial can see (Optuna 5's ``Study`` has no ``system_attrs``)."""
    names = ("study_name", "direction", "directions", "user_attrs", "system_attrs")
    trial.set_user_attr("has", {name: hasattr(trial.study, name) for name in names})
    return trial.suggest_float("x", 0.0, 1.0)


STUDY_STORAGE_READS = {
    "trials": lambda study: len(study.trials),
    "get_trials": lambda study: len(study.get_trials(deepcopy=False)),
    "best_trial": lambda study: study.best_trial.number,
    "set_user_attr": lambda study: study.set_user_attr("from_trial", 1),
}


def uses_study_storage(trial: optuna.Trial, what: str) -> float:
    """Reads (or writes) through ``trial.study`` what only the storage can answer."""
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number > 0:
        trial.set_user_attr("answer", STUDY_STORAGE_READS[what](trial.study))
    return x


# ---------------------------------------------------------------------------- trial.storage
def cross_validation_scores(trial: optuna.Trial) -> float:
    """``optuna.terminator.report_cross_validation_scores`` (``trial.storage`` + ``trial._trial_id``)."""
    from optuna.terminator import report_cross_validation_scores

    x = trial.suggest_float("x", 0.0, 1.0)
    scores = [x + 0.01 * k for k in range(4)]
    report_cross_validation_scores(trial, scores)
    return float(np.mean(scores))


def storage_writes(trial: optuna.Trial) -> float:
    """The trial's own attributes written through ``trial.storage`` with ``trial._trial_id``."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.storage.set_trial_user_attr(trial._trial_id, "via_storage", x)
    trial.storage.set_trial_system_attr(trial._trial_id, "system_via_storage", [1, 2])
    return x


def too_few_cross_validation_scores(trial: optuna.Trial) -> float:
    from optuna.terminator import report_cross_validation_scores

    x = trial.suggest_float("x", 0.0, 1.0)
    report_cross_validation_scores(trial, [x])  # ValueError: more than one score expected
    return x


def always_fails(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0.0, 1.0)
    raise ValueError("this objective always fails")


def reads_study_progress(trial: optuna.Trial) -> float:
    """Reads a study user attribute that a callback updates after every trial."""
    trial.set_user_attr("seen_progress", trial.study.user_attrs.get("progress"))
    return trial.suggest_float("x", 0.0, 1.0)


def note_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    study.set_user_attr("progress", trial.number)


def pruned_after_nan(trial: optuna.Trial) -> float:
    """Pruned with NaN as its last report: Optuna stores the PRUNED trial without a value."""
    trial.suggest_float("x", 0.0, 1.0)
    trial.report(0.5, 0)
    trial.report(math.nan, 1)
    raise optuna.TrialPruned()


def mixed_outcomes(trial: optuna.Trial) -> float:
    """COMPLETE, FAIL and PRUNED in turn."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.report(x, 0)
    if trial.number % 3 == 1:
        raise RuntimeError(f"trial {trial.number} failed")
    if trial.number % 3 == 2:
        raise optuna.TrialPruned()
    return x
