"""Declared parameters -> Optuna distributions, and enqueued values checked against them."""

from __future__ import annotations

from typing import Any

import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from daskopt.errors import SpecError
from daskopt.space import check_enqueued, to_distributions
from daskopt.spec import CategoricalParam, FloatParam, IntParam, Param


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (FloatParam(low=0.0, high=1.0), FloatDistribution(0.0, 1.0)),
        (FloatParam(low=1e-4, high=1.0, log=True), FloatDistribution(1e-4, 1.0, log=True)),
        (FloatParam(low=0.0, high=1.0, step=0.5), FloatDistribution(0.0, 1.0, step=0.5)),
        (IntParam(low=1, high=9), IntDistribution(1, 9)),
        (IntParam(low=1, high=9, step=2), IntDistribution(1, 9, step=2)),
        (IntParam(low=1, high=64, log=True), IntDistribution(1, 64, log=True)),
        (CategoricalParam(choices=("a", "b")), CategoricalDistribution(("a", "b"))),
    ],
)
def test_to_distributions(param: Param, expected: BaseDistribution) -> None:
    assert to_distributions({"p": param}) == {"p": expected}


DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.1),
    "layers": IntDistribution(1, 9, step=2),
    "optimizer": CategoricalDistribution(("adam", "sgd")),
}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"lr": 0.01},
        {"lr": 1},
        {"dropout": 0.3},
        {"layers": 7, "optimizer": "sgd"},
        {"lr": 1e-4, "dropout": 0.5, "layers": 1, "optimizer": "adam"},
    ],
)
def test_values_inside_their_distribution_pass(params: dict[str, Any]) -> None:
    check_enqueued(params, DISTRIBUTIONS)


@pytest.mark.parametrize(
    ("params", "key", "fragment"),
    [
        ({"lr": 2.0}, "lr", "got 2.0; expected a number in [0.0001, 1.0]"),
        ({"lr": "0.1"}, "lr", "expected a number"),
        ({"lr": float("nan")}, "lr", "expected a number"),
        ({"dropout": 0.25}, "dropout", "on the grid low + k * 0.1"),
        ({"layers": 2}, "layers", "on the grid low + k * 2"),
        ({"layers": 3.0}, "layers", "expected an integer in [1, 9]"),
        ({"layers": True}, "layers", "expected an integer"),
        ({"optimizer": "adamw"}, "optimizer", 'expected one of ["adam", "sgd"]'),
        ({"layer": 3}, "layer", "unknown parameter 'layer'; did you mean 'layers'?"),
    ],
)
def test_values_outside_their_distribution_name_the_parameter(params: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        check_enqueued(params, DISTRIBUTIONS)
    assert caught.value.key == key
    assert fragment in str(caught.value)


def test_no_declared_parameters_means_nothing_can_be_enqueued() -> None:
    with pytest.raises(SpecError, match="there are no valid parameters"):
        check_enqueued({"x": 1}, {})
