"""Guidance weights: numbers or schedules of normalised progress τ ∈ [0, 1].

τ = 0 is pure noise (the first sampling step) and τ = 1 is data (the last), for every
family, so one schedule means the same thing under DDIM, DPM-Solver, Euler flow
sampling, masked unmasking and autoregressive decoding (τ = tokens emitted / budget).

Weights compose with ``+``, ``-``, ``*`` and ``/`` with numbers and other weights, so
``2.0 * linear(1.0, 5.0) - 1`` is again a weight.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from framework.core.errors import UserError

__all__ = [
    "Weight",
    "WeightLike",
    "as_weight",
    "const",
    "cosine",
    "linear",
    "piecewise",
    "schedule",
    "window",
]


class Weight:
    """A scalar function of progress τ. Subclasses implement ``__call__`` and ``__repr__``."""

    def __call__(self, tau: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def constant(self) -> float | None:
        """The value if the weight does not depend on τ, else ``None``."""
        return None

    def _binary(self, other: WeightLike, op: Callable[[float, float], float], sym: str,
                swap: bool = False) -> Weight:
        a, b = (as_weight(other), self) if swap else (self, as_weight(other))
        if a.constant is not None and b.constant is not None:
            return Const(op(a.constant, b.constant))
        return _Binary(a, b, op, sym)

    def __add__(self, o: WeightLike) -> Weight:
        return self._binary(o, operator.add, "+")

    def __radd__(self, o: WeightLike) -> Weight:
        return self._binary(o, operator.add, "+", swap=True)

    def __sub__(self, o: WeightLike) -> Weight:
        return self._binary(o, operator.sub, "-")

    def __rsub__(self, o: WeightLike) -> Weight:
        return self._binary(o, operator.sub, "-", swap=True)

    def __mul__(self, o: WeightLike) -> Weight:
        if not isinstance(o, (int, float, Weight)):
            return NotImplemented  # lets Expr.__rmul__ handle `weight * expression`
        return self._binary(o, operator.mul, "*")

    def __rmul__(self, o: WeightLike) -> Weight:
        return self._binary(o, operator.mul, "*", swap=True)

    def __truediv__(self, o: WeightLike) -> Weight:
        return self._binary(o, operator.truediv, "/")

    def __neg__(self) -> Weight:
        return self._binary(-1.0, operator.mul, "*", swap=True)


WeightLike = float | int | Weight | Callable[[float], float]


class Const(Weight):
    """A constant weight."""

    def __init__(self, value: float) -> None:
        if not math.isfinite(float(value)):
            raise ValueError(f"guidance weight must be finite, got {value!r}")
        self.value = float(value)

    def __call__(self, tau: float) -> float:
        return self.value

    @property
    def constant(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"{self.value:g}"


class _Binary(Weight):
    def __init__(self, a: Weight, b: Weight, op: Callable[[float, float], float], sym: str):
        self.a, self.b, self.op, self.sym = a, b, op, sym

    def __call__(self, tau: float) -> float:
        return self.op(self.a(tau), self.b(tau))

    def __repr__(self) -> str:
        return f"({self.a!r} {self.sym} {self.b!r})"


def _c(tau: float) -> float:
    return (1.0 - math.cos(math.pi * tau)) / 2.0


class ScheduleError(UserError, ValueError):
    """A weight schedule whose value is not a finite number (e.g. weights so large they overflow)."""


class _Fn(Weight):
    def __init__(self, fn: Callable[[float], float], name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, tau: float) -> float:
        value = float(self.fn(tau))
        if not math.isfinite(value):
            raise ScheduleError(f"schedule {self.name} returned {value} at τ={tau:.4f}; use smaller weights")
        return value

    def __repr__(self) -> str:
        return self.name


def as_weight(w: WeightLike) -> Weight:
    """Coerce a number, a :class:`Weight` or a callable ``f(τ) -> float`` into a :class:`Weight`."""
    if isinstance(w, Weight):
        return w
    if isinstance(w, bool):
        raise TypeError("a guidance weight cannot be a bool")
    if isinstance(w, (int, float)):
        return Const(w)
    if callable(w):
        return schedule(w)
    raise TypeError(f"a guidance weight must be a number, a schedule or a callable of τ, "
                    f"got {type(w).__name__}")


def const(value: float) -> Weight:
    """A constant weight ``w(τ) = value``."""
    return Const(value)


def linear(start: float, end: float) -> Weight:
    """``w(τ) = start + (end − start)·τ``: a ramp from the first step (τ=0) to the last (τ=1).

    *Analysis of Classifier-Free Guidance Weight Schedulers* (2024) reports that
    monotonically increasing ramps whose mean equals the static weight help.
    """
    # a convex combination: finite for any finite start and end (end − start may overflow)
    return _Fn(lambda tau: start * (1.0 - tau) + end * tau, f"linear({start:g}, {end:g})")


def cosine(start: float, end: float) -> Weight:
    """``w(τ) = start + (end − start)·(1 − cos πτ)/2``: a smooth ramp."""
    return _Fn(lambda tau: start * (1.0 - _c(tau)) + end * _c(tau),
               f"cosine({start:g}, {end:g})")


def window(lo: float, hi: float, w: WeightLike = 1.0, outside: float = 0.0) -> Weight:
    """``w(τ)`` for ``lo ≤ τ ≤ hi`` and ``outside`` (default 0) elsewhere.

    A term whose weight is 0 is dropped by the planner together with the branches only
    it needed, so a window also saves model evaluations outside its interval.
    """
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"window needs 0 ≤ lo ≤ hi ≤ 1, got lo={lo}, hi={hi}")
    inner = as_weight(w)
    return _Fn(lambda tau: inner(tau) if lo <= tau <= hi else outside,
               f"window({lo:g}, {hi:g}, {inner!r})")


def piecewise(points: dict[float, float]) -> Weight:
    """A step-wise weight: ``piecewise({0.0: 1.0, 0.3: 7.5})`` is 1 before τ=0.3 and 7.5 from it."""
    if not points:
        raise ValueError("piecewise needs at least one (τ, weight) point")
    knots = sorted(points.items())

    def fn(tau: float) -> float:
        value = knots[0][1]
        for start, v in knots:
            if tau >= start:
                value = v
        return value

    return _Fn(fn, f"piecewise({dict(knots)})")


def schedule(fn: Callable[[float], float], name: str | None = None) -> Weight:
    """Wrap a user callable ``f(τ) -> float`` as a weight."""
    return _Fn(fn, name or getattr(fn, "__name__", "schedule"))
