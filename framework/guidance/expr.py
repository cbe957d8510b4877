"""Guidance expressions: mathematics over model branches.

An expression is a tree whose leaves are :class:`~framework.guidance.branches.Branch`
evaluations. Python operators build weighted sums (:class:`Linear`); non-affine
operations (APG, CFG-rescale, CFG-Zero*, ...) are nodes that declare the prediction
space they act in. Every node has a *mass* — the sum of its coefficients over branches:
1 for a prediction, 0 for a direction such as ``cond("text") - uncond()``. A guided
prediction must have mass 1; that is what makes the affine part valid in every
prediction space (an affine map ``T(p) = a·x + b·p`` commutes with combinations whose
coefficients sum to 1, and maps a direction to ``b·Δ``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from framework.core.errors import UserError
from framework.guidance.schedules import Weight, WeightLike, as_weight

__all__ = ["AffineError", "Expr", "Linear", "Window", "Zero", "check_zero_directions", "combine_excluding"]

# Coefficients smaller than this are treated as exactly zero: the term and the branches
# only it needed are not evaluated (e.g. ``uncond`` in ``uncond + 1*(cond - uncond)``).
ZERO_TOL = 1e-9
# Probe points used to validate τ-dependent masses at construction time.
PROBE_TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


class AffineError(UserError, ValueError):
    """A guided prediction whose coefficients do not sum to 1 (or a direction that is not 0)."""


class Expr:
    """Base class of guidance expressions. See the module docstring."""

    #: Sum of coefficients for leaves and non-affine nodes (Linear computes its own).
    mass_value: float = 1.0

    # ------------------------------------------------------------------ algebra
    def __add__(self, other: Any) -> Expr:
        return Linear.of((1.0, self), (1.0, _expr_operand(other, "+")))

    def __radd__(self, other: Any) -> Expr:
        if other == 0:  # lets sum([...]) work
            return self
        return Linear.of((1.0, _expr_operand(other, "+")), (1.0, self))

    def __sub__(self, other: Any) -> Expr:
        return Linear.of((1.0, self), (-1.0, _expr_operand(other, "-")))

    def __rsub__(self, other: Any) -> Expr:
        return Linear.of((1.0, _expr_operand(other, "-")), (-1.0, self))

    def __mul__(self, w: WeightLike) -> Expr:
        if isinstance(w, Expr):
            raise TypeError("cannot multiply two guidance expressions: weights are numbers or "
                            "schedules of τ, e.g. 7.5 * (cond('text') - uncond())")
        return Linear.of((as_weight(w), self))

    __rmul__ = __mul__

    def __truediv__(self, w: float) -> Expr:
        if not isinstance(w, (int, float)) or w == 0:
            raise TypeError(f"an expression can only be divided by a non-zero number, got {w!r}")
        return Linear.of((1.0 / w, self))

    def __neg__(self) -> Expr:
        return Linear.of((-1.0, self))

    def within(self, lo: float, hi: float, outside: Expr | None = None) -> Window:
        """Apply this guidance only for ``lo ≤ τ ≤ hi``; elsewhere evaluate ``outside``.

        ``outside`` defaults to :meth:`reference` — the plain conditional prediction, one
        branch — so outside the window no extra model evaluations are spent. A *direction*
        (mass 0, e.g. ``cond("a") - uncond()`` or a cost-gradient term) defaults to
        :class:`Zero` instead, so ``base + direction.within(lo, hi)`` stays a prediction.
        """
        if outside is None:
            is_direction = all(math.isclose(self.mass(t), 0.0, abs_tol=1e-9) for t in PROBE_TAUS)
            outside = Zero() if is_direction else self.reference()
        return Window(self, lo, hi, outside)

    # ------------------------------------------------------------------ introspection
    def children(self) -> tuple[Expr, ...]:
        """Direct sub-expressions."""
        return ()

    def walk(self) -> Iterator[Expr]:
        """Every node of the tree, depth first (shared nodes once per occurrence)."""
        yield self
        for c in self.children():
            yield from c.walk()

    def branches(self) -> frozenset[Expr]:
        """Every branch this expression may evaluate, at any τ."""
        out: frozenset[Expr] = frozenset()
        for c in self.children():
            out |= c.branches()
        return out

    def mass(self, tau: float = 0.5) -> float:
        """Sum of coefficients at ``τ``: 1 for a prediction, 0 for a direction."""
        return self.mass_value

    def coefficients(self, tau: float = 0.5) -> dict[Expr, float]:
        """The affine coefficients at ``τ``, keyed by branch (non-affine nodes are opaque keys).

        Zero coefficients are removed. ``cfg("text", 7.5).coefficients()`` is
        ``{uncond(): -6.5, cond('text'): 7.5}``.
        """
        out: dict[Expr, float] = {}
        self._flatten(tau, 1.0, out)
        return {k: v for k, v in out.items() if abs(v) > ZERO_TOL}

    def _flatten(self, tau: float, scale: float, out: dict[Expr, float]) -> None:
        out[self] = out.get(self, 0.0) + scale

    def required_subsets(self) -> set[frozenset[str]]:
        """The condition subsets the main network must have been trained with.

        One frozenset of non-null condition names per ``"main"``-network branch: a branch
        that nulls a condition needs the model to have seen that condition dropped. Weak or
        other networks are excluded (they carry their own training).
        """
        return {b.names for b in self.branches() if b.network == "main"}

    def reference(self) -> Expr:
        """The unguided prediction, a :class:`~framework.guidance.branches.Branch`: every condition
        any main branch keeps, unperturbed.

        A condition that is only ever noised (CADS) stays noised: the annealing applies to the
        conditional prediction with or without guidance.
        """
        leaves = sorted(self.branches(), key=repr)  # sorted: the same reference every run
        if not leaves:
            raise AffineError(f"{self!r} evaluates no branch, so it has no unguided prediction")
        return leaves[0].unguided(leaves)

    def check(self, taus: tuple[float, ...] = PROBE_TAUS, expect: float = 1.0) -> None:
        """Raise :class:`AffineError` unless the mass is ``expect`` at every probe τ."""
        for tau in taus:
            m = self.mass(tau)
            if not math.isclose(m, expect, rel_tol=1e-6, abs_tol=1e-6):
                coefs = ", ".join(f"{k!r}: {v:+.4g}" for k, v in self.coefficients(tau).items())
                kind = "a guided prediction" if expect == 1.0 else "a direction"
                hint = (" — did you forget the base term, e.g. `uncond() + w * (cond(...) - "
                        "uncond())`?") if expect == 1.0 else ""
                raise AffineError(
                    f"{kind} must have coefficients summing to {expect:g}, but at τ={tau:g} "
                    f"they sum to {m:.6g} ({coefs}){hint}\n  expression: {self!r}")

    # ------------------------------------------------------------------ evaluation protocol
    def needed(self, tau: float, state: Any) -> frozenset[Expr]:
        """Branches that must be evaluated at this step (zero-weight terms pruned)."""
        out: frozenset[Expr] = frozenset()
        for c in self.children():
            out |= c.needed(tau, state)
        return out

    def value(self, ctx: Any, space: str) -> torch.Tensor:
        """Evaluate in prediction ``space`` from the step context's branch predictions."""
        raise NotImplementedError


def combine_excluding(terms: list[tuple[Expr, float, torch.Tensor]]) -> torch.Tensor:
    """``Σ_i c_i·ℓ_i`` over logits/log-probabilities ``[B, ..., V]`` where ``-inf`` marks excluded tokens.

    In probability terms guidance is ``p̃ ∝ Π_i p_i^{c_i}``. A token with ``p_i = 0`` in a branch
    of positive coefficient gets ``0^{c_i} = 0``: it stays excluded (``-inf``) whatever the other
    branches say — in particular when every branch excludes it (a shared constraint mask), which
    is the same as masking after guidance, as ``transformers``' ``generate`` does. Without -inf
    handling ``c_u·(−inf)`` with ``c_u < 0`` is ``+inf`` and the sum is NaN.

    A token excluded *only* by branches of negative coefficient (``p_u = 0 < p_c`` under CFG with
    ``w > 1``) would get ``p_u^{1−w} = ∞``: guidance would force a token the subtracted branch
    forbids. There is no meaningful finite answer (``transformers``' CFG processor returns NaN),
    so this raises ``FloatingPointError`` naming the branch and a token.
    """
    excluded = None  # -inf in a branch of positive coefficient
    subtracted = []
    total = None
    for leaf, c, v in terms:
        ninf = torch.isneginf(v)
        part = v.masked_fill(ninf, 0.0) * c
        total = part if total is None else total + part
        if c > 0:
            excluded = ninf if excluded is None else excluded | ninf
        else:
            subtracted.append((leaf, c, ninf))
    for leaf, c, ninf in subtracted:
        forced = ninf if excluded is None else ninf & ~excluded
        if bool(forced.any()):
            where = tuple(int(i) for i in forced.nonzero()[0])
            raise FloatingPointError(
                f"branch {leaf!r} has coefficient {c:+g} and marks token {where[-1]} -inf (at index "
                f"{where}) where no positively weighted branch does: the guided logit would be +inf, "
                f"forcing a token that branch forbids. Give every branch the same -inf (constraint) "
                f"mask, or exclude the token in a positively weighted branch too.")
    return total if excluded is None else total.masked_fill(excluded, -torch.inf)


def _expr_operand(other: Any, op: str) -> Expr:
    if isinstance(other, Expr):
        return other
    raise TypeError(
        f"cannot use {op!r} between a guidance expression and {type(other).__name__} "
        f"{other!r}: numbers only weight expressions, e.g. uncond() + 7.5 * (cond('text') - "
        f"uncond())")


class Linear(Expr):
    """A weighted sum ``Σ_i w_i(τ)·e_i`` of sub-expressions."""

    def __init__(self, terms: tuple[tuple[Weight, Expr], ...]) -> None:
        self.terms = terms

    @classmethod
    def of(cls, *terms: tuple[WeightLike, Expr]) -> Linear:
        flat: list[tuple[Weight, Expr]] = []
        for w, e in terms:
            w = as_weight(w)
            if isinstance(e, Linear) and w.constant == 1.0:
                flat.extend(e.terms)  # splice unit-weight sums: keeps reprs flat
            else:
                flat.append((w, e))
        return cls(tuple(flat))

    def children(self) -> tuple[Expr, ...]:
        return tuple(e for _, e in self.terms)

    def mass(self, tau: float = 0.5) -> float:
        return sum(w(tau) * e.mass(tau) for w, e in self.terms)

    def _flatten(self, tau: float, scale: float, out: dict[Expr, float]) -> None:
        for w, e in self.terms:
            wt = w(tau)
            if wt != 0.0:
                e._flatten(tau, scale * wt, out)

    def needed(self, tau: float, state: Any) -> frozenset[Expr]:
        out: frozenset[Expr] = frozenset()
        for leaf in self.coefficients(tau):
            out |= leaf.needed(tau, state)
        return out

    def value(self, ctx: Any, space: str) -> torch.Tensor:
        terms = [(leaf, c, leaf.value(ctx, space)) for leaf, c in ctx.coefficients(self).items()]
        if not terms:
            raise AffineError(f"every term of {self!r} has weight 0 at τ={ctx.tau:g}")
        total = None
        for _, c, v in terms:
            total = v * c if total is None else total + v * c
        # a -inf (excluded token) in any term makes the sum non-finite: one reduction tells
        if getattr(ctx.converter, "allows_neg_inf", False):
            if not math.isfinite(float(total.sum())):
                return combine_excluding(terms)
            ctx.known_finite = total
        return total

    def __repr__(self) -> str:
        parts = []
        for i, (w, e) in enumerate(self.terms):
            inner = repr(e)
            if isinstance(e, Linear) and len(e.terms) > 1:
                inner = f"({inner})"
            c = w.constant
            if c == 1.0:
                s = inner
            elif c == -1.0:
                s = f"-{inner}"
            else:
                s = f"{w!r}*{inner}"
            if i and s.startswith("-"):
                parts.append(f" - {s[1:]}")
            elif i:
                parts.append(f" + {s}")
            else:
                parts.append(s)
        return "".join(parts)


class Window(Expr):
    """``inner`` for ``lo ≤ τ ≤ hi``, ``outside`` elsewhere (guidance interval, staged guidance)."""

    def __init__(self, inner: Expr, lo: float, hi: float, outside: Expr) -> None:
        if not isinstance(outside, Expr):
            raise TypeError(f"within(..., outside=...) takes a guidance expression (e.g. uncond), got "
                            f"{outside!r}"[:200])
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"within() needs 0 ≤ lo ≤ hi ≤ 1, got lo={lo}, hi={hi}")
        self.inner, self.lo, self.hi, self.outside = inner, float(lo), float(hi), outside

    def active(self, tau: float) -> Expr:
        return self.inner if self.lo <= tau <= self.hi else self.outside

    def children(self) -> tuple[Expr, ...]:
        return (self.inner, self.outside)

    def mass(self, tau: float = 0.5) -> float:
        return self.active(tau).mass(tau)

    def _flatten(self, tau: float, scale: float, out: dict[Expr, float]) -> None:
        self.active(tau)._flatten(tau, scale, out)

    def needed(self, tau: float, state: Any) -> frozenset[Expr]:
        return self.active(tau).needed(tau, state)

    def value(self, ctx: Any, space: str) -> torch.Tensor:
        return self.active(ctx.tau).value(ctx, space)

    def __repr__(self) -> str:
        return f"({self.inner!r}).within({self.lo:g}, {self.hi:g}, outside={self.outside!r})"


def check_zero_directions(expr: Expr, taus: tuple[float, ...] = PROBE_TAUS) -> None:
    """Raise :class:`AffineError` if a weighted term of ``expr`` is a direction whose branches cancel
    at every probe τ, e.g. the ``3*(uncond - uncond)`` of ``cfg(uncond, 3)``: the weight would be
    silently ignored. (It is an error rather than a warning because no such term can mean anything
    but a typo: a guidance direction is the difference of two *different* branches.)
    """
    for node in expr.walk():
        if not isinstance(node, Linear):
            continue
        for w, term in node.terms:
            if isinstance(term, Linear) and any(w(t) != 0.0 for t in taus) and all(
                    math.isclose(term.mass(t), 0.0, abs_tol=1e-9) and not term.coefficients(t)
                    for t in taus):
                raise AffineError(f"the term {w!r}*({term!r}) is identically zero (its branches "
                                  f"cancel), so its weight does nothing; a guidance direction is the "
                                  f"difference of two different branches, e.g. cond(shape) - uncond. "
                                  f"Expression: {expr!r}")


class Zero(Expr):
    """The zero direction (mass 0, no branches): what a windowed direction is outside its window."""

    mass_value = 0.0

    def _flatten(self, tau: float, scale: float, out: dict[Expr, float]) -> None:
        return None  # contributes no coefficient, so no branch is planned for it

    def value(self, ctx: Any, space: str) -> torch.Tensor:
        import torch

        return torch.zeros((), device=ctx.x.device)  # broadcasts against any prediction

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Zero)

    def __hash__(self) -> int:
        return hash(Zero)

    def __repr__(self) -> str:
        return "zero()"
