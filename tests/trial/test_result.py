"""Objective return values -> objective values, or a one-line reason to FAIL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskopt.trial.result import InvalidReturn, objective_values

VALID = [
    (1, 1, [], None, [1.0]),
    (np.float32(0.5), 1, [], None, [0.5]),
    ([2.0], 1, [], None, [2.0]),
    ((1, 2), 2, [], None, [1.0, 2.0]),
    (None, 1, [1.0, 2.0, 3.0, 5.0], 2, [4.0]),
    (None, 1, [3.0], 5, [3.0]),
]
INVALID = [
    ("x", 1, [], None, "returned 'x' (str); expected a float"),
    (True, 1, [], None, "returned True (bool)"),
    (math.nan, 1, [], None, "returned nan; expected a finite float"),
    (-math.inf, 1, [], None, "returned -inf"),
    ([1, 2], 1, [], None, "expected a single float"),
    (1.0, 2, [], None, "expected a sequence of 2 floats"),
    ((1.0,), 2, [], None, "returned 1 values; expected 2"),
    (None, 1, [], None, "set report_last_n"),
    (None, 1, [], 3, "returned None without reporting"),
    (None, 1, [0.5, 0.7], None, "returned None after 2 report(s); expected a float, or set report_last_n"),
    ({"a": 1}, 1, [], None, "expected a float"),
]


@pytest.mark.parametrize(("returned", "n", "reported", "last_n", "expected"), VALID)
def test_valid_returns(returned, n, reported, last_n, expected):
    assert objective_values(returned, n, reported, last_n) == expected


@pytest.mark.parametrize(("returned", "n", "reported", "last_n", "fragment"), INVALID)
def test_invalid_returns_say_what_came_back(returned, n, reported, last_n, fragment):
    with pytest.raises(InvalidReturn, match=None) as info:
        objective_values(returned, n, reported, last_n)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
