"""Branches: one model evaluation each — which conditions, which network, which perturbation.

A branch names the conditions it keeps; every other condition is replaced by its null.
Branches are hashable, so identical branches used by several terms of an expression are
evaluated once.

>>> cond("image", "text")              # both kept
>>> uncond()                           # every condition null
>>> cond(text="blurry")                # text replaced by a negative prompt
>>> cond(text=independent())           # ICG: text drawn independently of x
>>> cond("text").on("weak")            # the same condition on a weaker network
>>> cond("text").perturbed(AttnIdentity())   # PAG
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from framework.guidance.expr import Expr
from framework.guidance.schedules import Weight, WeightLike, as_weight

__all__ = [
    "KEEP",
    "AttnBlur",
    "AttnIdentity",
    "Branch",
    "Independent",
    "Noised",
    "Perturbation",
    "Replace",
    "SkipLayers",
    "TimeShift",
    "cond",
    "independent",
    "noised",
    "uncond",
]


# ---------------------------------------------------------------------------- condition values
class _Keep:
    """The sample's own condition value is kept."""

    _instance: _Keep | None = None

    def __new__(cls) -> _Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


class Replace:
    """Replace a condition by a fixed value (negative prompt, reference class, ...).

    The value is raw (a label such as ``"blue"``, an int) and encoded by the condition's
    :class:`~framework.core.conditions.ConditionSpec`, or a tensor of one sample's shape.
    Tensors compare by identity, everything else by value, so branches stay hashable.
    """

    def __init__(self, value: Any) -> None:
        self.value = value
        # tensors hash by identity but compare element-wise: key them by identity explicitly
        if isinstance(value, torch.Tensor):
            self._key: Any = ("id", id(value))
        else:
            try:
                hash(value)
                self._key = ("value", value)
            except TypeError:
                self._key = ("id", id(value))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Replace) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return repr(self.value) if self._key[0] == "value" else "<tensor>"


@dataclass(frozen=True)
class Independent:
    """ICG: a condition drawn independently of ``x`` (*No Training, No Problem*, 2024).

    ``sampler="shuffle"`` uses another sample's condition from the batch (a derangement);
    ``"prior"`` draws uniformly from a categorical condition's labels.
    """

    sampler: Literal["shuffle", "prior"] = "shuffle"

    def __repr__(self) -> str:
        return f"independent({self.sampler!r})"


@dataclass(frozen=True)
class Noised:
    """CADS: the condition embedding annealed with Gaussian noise.

    ``ĉ = √γ(τ)·c + s·√(1−γ(τ))·n`` then optionally ``ψ``-rescaled to the clean
    embedding's mean/std (*CADS*, 2023). ``gamma`` is a weight of τ in [0, 1].
    """

    gamma: Weight
    s: float = 0.25
    psi: float = 1.0

    def __repr__(self) -> str:
        return f"noised(gamma={self.gamma!r}, s={self.s:g}, psi={self.psi:g})"


CondValue = _Keep | Replace | Independent | Noised


def independent(sampler: Literal["shuffle", "prior"] = "shuffle") -> Independent:
    """An ICG condition value: ``cond(text=independent())``."""
    if sampler not in ("shuffle", "prior"):
        raise ValueError(f"independent() sampler must be 'shuffle' or 'prior', got {sampler!r}")
    return Independent(sampler)


def noised(gamma: WeightLike, s: float = 0.25, psi: float = 1.0) -> Noised:
    """A CADS condition value: ``cond(text=noised(gamma=linear(0, 1)))``."""
    return Noised(as_weight(gamma), float(s), float(psi))


# ---------------------------------------------------------------------------- perturbations
@dataclass(frozen=True)
class Perturbation:
    """An in-network modification applied to the rows of one branch only."""

    layers: tuple[int, ...] | None = None  # None: the backbone's default layers


@dataclass(frozen=True)
class AttnIdentity(Perturbation):
    """PAG: self-attention maps replaced by the identity (value passes through)."""


@dataclass(frozen=True)
class AttnBlur(Perturbation):
    """SEG: self-attention queries Gaussian-blurred with width ``sigma`` (inf = uniform)."""

    sigma: float = 10.0


@dataclass(frozen=True)
class SkipLayers(Perturbation):
    """Skip-layer guidance: the listed blocks are bypassed (residual only)."""


@dataclass(frozen=True)
class TimeShift(Perturbation):
    """TSG: the time input shifted by ``delta`` (in the model's own time units).

    The engine applies this one itself by shifting ``t`` on the branch's rows, so it
    works with any model.
    """

    delta: float = 0.0


# ---------------------------------------------------------------------------- branches
@dataclass(frozen=True, eq=True)
class Branch(Expr):
    """One model evaluation spec.

    Attributes:
        conds: ``(name, value)`` pairs, sorted by name, for every condition that is not
            null in this branch. ``value`` is :data:`KEEP`, :class:`Replace`,
            :class:`Independent` or :class:`Noised`.
        network: which network evaluates it (``"main"``, ``"weak"``, ``"ema"`` ...).
        perturbation: optional in-network perturbation for this branch's rows.
    """

    conds: tuple[tuple[str, CondValue], ...] = ()
    network: str = "main"
    perturbation: Perturbation | None = field(default=None)

    # -- constructors that read like the maths
    def on(self, network: str) -> Branch:
        """The same branch evaluated by another network, e.g. ``cond("text").on("weak")``."""
        if not isinstance(network, str) or not network:
            raise ValueError(f"network name must be a non-empty string, got {network!r}")
        return replace(self, network=network)

    def perturbed(self, perturbation: Perturbation) -> Branch:
        """The same branch with an in-network perturbation (PAG, SEG, skip layers, TSG)."""
        if not isinstance(perturbation, Perturbation):
            raise TypeError(f"perturbed() takes a Perturbation, got {type(perturbation).__name__}")
        return replace(self, perturbation=perturbation)

    @staticmethod
    def unguided(branches: Iterable[Branch]) -> Branch:
        """The unguided prediction of an expression over ``branches``
        (:meth:`~framework.guidance.expr.Expr.reference`): every condition a main-network branch
        keeps, unperturbed; a condition only ever noised (CADS) stays noised."""
        values: dict[str, Any] = {}
        for b in branches:
            if b.network != "main":
                continue
            for name, v in b.conds:
                if v is KEEP:
                    values[name] = KEEP
                elif isinstance(v, Noised):
                    values.setdefault(name, v)
        return Branch(tuple(sorted(values.items())))

    # -- introspection
    @property
    def names(self) -> frozenset[str]:
        """Conditions that are not null in this branch."""
        return frozenset(n for n, _ in self.conds)

    @property
    def kept(self) -> frozenset[str]:
        """Conditions carrying the sample's own value unchanged."""
        return frozenset(n for n, v in self.conds if v is KEEP)

    def value_of(self, name: str) -> CondValue | None:
        """The assignment of condition ``name`` (``None`` = null)."""
        for n, v in self.conds:
            if n == name:
                return v
        return None

    # -- Expr protocol
    mass_value = 1.0

    def branches(self) -> frozenset[Branch]:
        return frozenset((self,))

    def _flatten(self, tau: float, scale: float, out: dict) -> None:
        out[self] = out.get(self, 0.0) + scale

    def needed(self, tau: float, state: Any) -> frozenset[Branch]:
        return frozenset((self,))

    def value(self, ctx: Any, space: str):  # -> Tensor
        return ctx.pred(self, space)

    def __repr__(self) -> str:
        parts = [repr(n) for n, v in self.conds if v is KEEP]
        parts += [f"{n}={v!r}" for n, v in self.conds if v is not KEEP]
        s = f"cond({', '.join(parts)})" if parts else "uncond()"
        if self.network != "main":
            s += f".on({self.network!r})"
        if self.perturbation is not None:
            s += f".perturbed({self.perturbation!r})"
        return s

    def label(self) -> str:
        """A short label for logs and tables."""
        return repr(self)


def cond(*names: str, **values: Any) -> Branch:
    """A branch keeping ``names`` and assigning ``values`` to other conditions.

    ``cond("shape", "color")`` keeps both; ``cond("shape", color="blue")`` keeps the
    shape and replaces the colour by a negative value; ``cond(text=independent())`` is
    ICG's independent condition. Every condition not mentioned is null.
    """
    conds: dict[str, CondValue] = {}
    for n in names:
        if not isinstance(n, str) or not n:
            raise TypeError(f"condition names must be non-empty strings, got {n!r}")
        conds[n] = KEEP
    for n, v in values.items():
        if n in conds:
            raise ValueError(f"condition {n!r} is both kept and assigned a value")
        conds[n] = v if isinstance(v, (Replace, Independent, Noised)) else Replace(v)
    return Branch(tuple(sorted(conds.items())))


def uncond() -> Branch:
    """The branch with every condition null."""
    return Branch(())
