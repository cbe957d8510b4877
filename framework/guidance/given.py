"""Guidance against the conditions actually given: refuse what would be silently wrong.

A condition that no sample of the batch carries is null in every branch that keeps it, so
``cfg(color, 3)`` with only a shape given evaluates ``uncond`` twice: unconditional samples at
twice the cost. :func:`check_given` refuses exactly the guidance that ungiven conditions make
degenerate:

* two branches of the guidance become the same evaluation (a direction that is identically zero,
  e.g. ``cfg(color, 3)`` or the colour term of ``nested([shape, color], ...)`` without a colour);
* a branch that keeps conditions keeps none of them (``cond(color)`` alone is unconditional).

A guidance whose branches all stay distinct and conditional is what it says on the conditions
given: ``cfg((shape, color), 3)`` with only a shape is CFG on the shape (a recipe's default
guidance stays usable with fewer conditions).
"""

from __future__ import annotations

from framework.core.conditions import ConditionError, Conditions
from framework.guidance.branches import KEEP, Branch, Independent, Noised
from framework.guidance.expr import Expr

__all__ = ["check_given", "given_names"]


def given_names(conditions: Conditions) -> frozenset[str]:
    """Conditions present for at least one sample of the batch."""
    return frozenset(n for n, p in conditions.present.items() if bool(p.any()))


def _uses_sample_value(value: object) -> bool:
    """Whether a branch's value of a condition is the sample's own (null when not given)."""
    return value is KEEP or isinstance(value, Noised) or (
        isinstance(value, Independent) and value.sampler == "shuffle")


def _effective(branch: Branch, given: frozenset[str]) -> Branch:
    """``branch`` with the conditions that are not given nulled, as the network will see it."""
    conds = tuple((n, v) for n, v in branch.conds if n in given or not _uses_sample_value(v))
    return Branch(conds, branch.network, branch.perturbation)


def check_given(expr: Expr, conditions: Conditions) -> None:
    """Raise :class:`~framework.core.conditions.ConditionError` if conditions that no sample carries make
    ``expr`` degenerate (see the module docstring); the message names those conditions.

    ``conditions``: the batch to sample (``present`` masks ``[B]`` per condition).
    """
    given = given_names(conditions)
    missing_all = sorted({n for b in expr.branches() for n, v in b.conds
                          if n not in given and _uses_sample_value(v)})
    if not missing_all:
        return
    seen: dict[Branch, Branch] = {}
    problem = None
    for b in sorted(expr.branches(), key=repr):
        eff = _effective(b, given)
        if eff in seen:
            problem = f"{seen[eff]!r} and {b!r} become the same evaluation, {eff!r}"
            break
        seen[eff] = b
        if any(_uses_sample_value(v) for _, v in b.conds) and not any(
                _uses_sample_value(v) for _, v in eff.conds):
            problem = f"{b!r} becomes {eff!r}"
            break
    if problem is None:
        return
    names = ", ".join(repr(n) for n in missing_all)
    have = ", ".join(repr(n) for n in sorted(given)) or "none"
    raise ConditionError(
        f"the guidance {expr!r} uses condition {names}, which no sample was given "
        f"(given: {have}), so {problem}: the result would silently ignore it. "
        f"Give a value for {names} (e.g. --cond NAME=VALUE), or leave it out of the guidance")
