"""Weights and schedules of normalised progress τ."""

import math

import pytest

from framework.guidance import const, cosine, linear, piecewise, schedule, window
from framework.guidance.schedules import as_weight


def test_values():
    assert linear(1, 5)(0.25) == 2.0
    assert cosine(0, 2)(0.5) == pytest.approx(1.0) and cosine(0, 2)(1.0) == pytest.approx(2.0)
    assert [window(0.2, 0.6, 4)(t) for t in (0.1, 0.2, 0.6, 0.7)] == [0, 4, 4, 0]
    assert [piecewise({0.0: 1.0, 0.3: 7.5})(t) for t in (0.0, 0.29, 0.3, 1.0)] == [1, 1, 7.5, 7.5]
    assert schedule(lambda t: 1 + t)(0.5) == 1.5


def test_arithmetic_composes_weights():
    w = 2 * linear(1, 5) - 1
    assert w(0.0) == 1.0 and w(1.0) == 9.0
    assert (const(3) + 2).constant == 5.0  # constants fold
    assert (linear(0, 1) / 2)(1.0) == 0.5 and (-linear(0, 1))(1.0) == -1.0


def test_bad_weights_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        as_weight(math.inf)
    with pytest.raises(TypeError, match="cannot be a bool"):
        as_weight(True)
    with pytest.raises(ValueError, match="0 ≤ lo ≤ hi ≤ 1"):
        window(0.8, 0.2, 3)
    with pytest.raises(ValueError, match="returned nan"):
        schedule(lambda t: math.nan, "bad")(0.1)
