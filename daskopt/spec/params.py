"""The parameter tables of ``[space]``: one model per distribution kind, plus the spellings other tools use.

Each check is a field validator on the key it is about, so an error points at ``space.lr.low`` rather than
at ``space.lr``. Field order matters: pydantic validates in declaration order, so ``log`` and ``step``
come before the bounds that are checked against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, ValidationInfo, field_validator

from daskopt.spec.base import Section, closest, invalid, key_error, show

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _no_step_with_log(step: float | None, info: ValidationInfo) -> float | None:
    if step is not None and info.data.get("log"):
        raise invalid(f"got step = {step} with log = true; a log scale takes no step: remove step or log")
    return step


def _positive_with_log(low: float, info: ValidationInfo) -> float:
    if info.data.get("log") and low <= 0:
        raise invalid(f"got low = {low} with log = true; a log scale needs low > 0: raise low or remove log")
    return low


def _above_low(high: float, info: ValidationInfo) -> float:
    low = info.data.get("low")
    if low is not None and high <= low:
        raise invalid(f"got high = {high} with low = {low}; expected high > low")
    return high


class FloatParam(Section):
    """A real-valued parameter in ``[low, high]``: ``optuna.distributions.FloatDistribution``."""

    type: Literal["float"] = "float"
    log: bool = False
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    low: FiniteFloat
    high: FiniteFloat

    _check_step = field_validator("step")(_no_step_with_log)
    _check_low = field_validator("low")(_positive_with_log)
    _check_high = field_validator("high")(_above_low)


class IntParam(Section):
    """An integer parameter in ``[low, high]``: ``optuna.distributions.IntDistribution`` (no step means 1)."""

    type: Literal["int"] = "int"
    log: bool = False
    step: Annotated[int, Field(gt=0)] | None = None
    low: int
    high: int

    _check_step = field_validator("step")(_no_step_with_log)
    _check_low = field_validator("low")(_positive_with_log)
    _check_high = field_validator("high")(_above_low)


class CategoricalParam(Section):
    """One of ``choices``: ``optuna.distributions.CategoricalDistribution``."""

    type: Literal["categorical"] = "categorical"
    choices: Annotated[tuple[Any, ...], Field(strict=False)]

    @field_validator("choices")
    @classmethod
    def _plain_values(cls, choices: tuple[Any, ...]) -> tuple[Any, ...]:
        """Optuna stores choices as JSON scalars; a table or array choice would fail only at the first trial."""
        if not choices:
            raise invalid('got []; expected at least one choice, e.g. choices = ["adam", "sgd"]')
        for index, choice in enumerate(choices):
            if not isinstance(choice, (bool, int, float, str)):
                raise invalid(f"got {show(choice)} at choices[{index}]; expected strings, numbers or booleans")
        return choices


Param = FloatParam | IntParam | CategoricalParam

#: every accepted ``type`` spelling -> the model and the keys the spelling implies
_SPELLINGS: dict[str, tuple[type[Param], dict[str, Any]]] = {
    "float": (FloatParam, {}),
    "uniform": (FloatParam, {"type": "float"}),
    "loguniform": (FloatParam, {"type": "float", "log": True}),
    "int": (IntParam, {}),
    "categorical": (CategoricalParam, {}),
    "choice": (CategoricalParam, {"type": "categorical"}),
}


def _validate_param(value: Any, info: ValidationInfo) -> Param:
    """Pick the model from ``type`` by hand: a pydantic tagged union would put the tag in the key path."""
    if isinstance(value, (FloatParam, IntParam, CategoricalParam)):
        return value
    if not isinstance(value, dict):
        raise invalid(f'got {show(value)}; expected a table such as {{ type = "float", low = 0.0, high = 1.0 }}')
    spelled = value.get("type")
    if not isinstance(spelled, str) or spelled not in _SPELLINGS:
        raise key_error(("type",), _type_message(value), spelled)
    model, implied = _SPELLINGS[spelled]
    if implied.get("log") and value.get("log", True) is not True:
        raise key_error(("log",), f'type = "{spelled}" means log = true; remove log or use type = "float"', False)
    return model.model_validate({**value, **implied}, context=info.context)


def _type_message(table: dict[str, Any]) -> str:
    spelled = table.get("type")
    received = f"got {show(spelled)}" if "type" in table else "missing required key 'type'"
    close = closest(spelled, _SPELLINGS) if isinstance(spelled, str) else None
    suggestion = f" did you mean {close!r}?" if close else ""
    return f"{received};{suggestion} expected one of float, int, categorical (or uniform, loguniform, choice)"


#: the annotation of a ``[space]`` entry
ParamSpec = Annotated[Param, PlainValidator(_validate_param)]
