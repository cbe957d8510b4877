"""Cost-gradient guidance: the direction ``−∇ cost(x̂0)`` as a term of the algebra.

This is the ``GradTerm`` primitive of training-free / loss-guided guidance — *TFG: Unified
Training-Free Guidance for Diffusion Models* (Ye et al., 2024), *Universal Guidance for
Diffusion Models* (Bansal et al., 2023), *Diffusion Posterior Sampling for General Noisy Inverse
Problems* (DPS, Chung et al., 2022), *FlowChef* (Patel et al., 2024) — and, with
``cost = −log p(y | x̂0)``, of classifier guidance on clean-data classifiers.

A *cost* is a differentiable callable ``cost(x0 [B, *shape], conditions) -> [B]`` (per-sample,
lower is better) on the family's clean-data estimate ``x̂0`` in the model's representation space.
With ``x̂0`` read from one branch ``b`` (default: the expression's unguided reference prediction,
which CFG terms evaluate anyway), the term is a **direction in x0 space** (mass 0):

* ``through_model=False``: ``Δ_x0 = −∇_{x̂0} cost(x̂0)`` with ``x̂0`` detached from the network
  (no backward pass through it; FlowChef / TFG's ``μ``-term / Dreamguider);
* ``through_model=True``: ``Δ_x0 = −∇_{x_t} cost(x̂0(x_t))``, back-propagated through the network
  and the family's ``x̂0`` conversion to the state ``x_t`` (DPS / TFG's ``ρ``-term); this needs
  branch ``b``'s forward under autograd.

``base + w·cost(...)`` therefore means ``x̃0 = x̂0_base + w·Δ_x0``, and in any other space the
direction converts without the ``x_t`` offset: ``ε̃ = ε_base − w·(α_t/σ_t)·Δ_x0``,
``ṽ = v_base − w·((α_t² + σ_t²)/σ_t)·Δ_x0`` (diffusion), ``ṽ = v_base − w·Δ_x0/t`` (flow). No
extra σ normalisation: ``w`` is a step in x̂0 units per unit gradient, the same in every family
and space, and the sampler's own x0 → x_t map scales its effect on the state (small at high noise).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from framework.core.errors import UserError
from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op

if TYPE_CHECKING:
    from framework.core.conditions import Conditions
    from framework.guidance.branches import Branch

__all__ = ["CostError", "CostFn", "CostGrad", "cost_gradient", "find_costs", "unknown_cost"]

#: ``cost(x0 [B, *shape], conditions) -> [B]``: differentiable per-sample cost, lower is better.
CostFn = Callable[[torch.Tensor, "Conditions"], torch.Tensor]


class CostError(UserError, ValueError):
    """A cost that was not supplied, or one that returned something unusable."""


class CostGrad(Op):
    """The direction ``−∇ cost(x̂0)`` in x0 space (mass 0). Build it with ``presets.cost``.

    Args:
        name: the cost's name, looked up at sampling time among the costs supplied to the
            sampler (``costs={"name": fn}``) and those the model's modality plugin provides.
        through_model: back-propagate through the network to ``x_t`` (see the module docstring).
        at: the branch whose ``x̂0`` the cost reads; ``None``: the guided expression's reference
            (the unguided prediction keeping every condition the expression keeps).
    """

    mass_value = 0.0
    space = "x0"

    def __init__(self, name: str, through_model: bool = False, at: Branch | None = None) -> None:
        from framework.guidance.branches import Branch

        if not isinstance(name, str) or not name:
            raise ValueError(f"a cost is named by a non-empty string, got {name!r}")
        if not isinstance(through_model, bool):
            raise TypeError(f"through_model must be True or False, got {through_model!r}")
        if at is not None and not isinstance(at, Branch):
            raise TypeError(f"at= takes a branch such as cond('text'), got {at!r}")
        self.name, self.through_model, self.at = name, through_model, at

    # ------------------------------------------------------------------ identity
    def _key(self) -> tuple:
        return (self.name, self.through_model, self.at)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CostGrad) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(("cost", *self._key()))

    def __repr__(self) -> str:
        extra = ", through_model=True" if self.through_model else ""
        extra += f", at={self.at!r}" if self.at is not None else ""
        return f"cost({self.name!r}{extra})"

    # ------------------------------------------------------------------ evaluation protocol
    def branches(self) -> frozenset[Branch]:
        return frozenset((self.at,)) if self.at is not None else frozenset()

    def source(self, state: Any) -> Branch:
        """The branch whose ``x̂0`` the cost reads in this run."""
        if self.at is not None:
            return self.at
        ref = getattr(state, "reference", None)
        if ref is None:
            raise CostError(f"{self!r} reads the expression's reference branch, but this guidance "
                            f"state has none: create states with Guider.new_state()")
        return ref

    def needed(self, tau: float, state: Any) -> frozenset[Branch]:
        branch = self.source(state)
        planned = getattr(state, "planned_costs", None)
        if planned is not None:  # the Guider collects the active cost terms while planning
            planned[(self.name, branch, self.through_model)] = self
        return frozenset((branch,))

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        return -ctx.cost_gradient(self.name, self.source(ctx.state), self.through_model)


def cost_gradient(fn: CostFn, name: str, x0: torch.Tensor, wrt: torch.Tensor,
                  conditions: Conditions, retain_graph: bool) -> torch.Tensor:
    """``∇_wrt Σ_b cost(x0)_b`` ``[B, *shape]``, with the cost's output checked.

    ``wrt`` is ``x0`` itself (detached from the network) or the state ``x_t`` that ``x0`` was
    computed from under autograd. Samples do not interact, so the sum's gradient is each
    sample's own gradient.
    """
    with torch.enable_grad():
        value = fn(x0, conditions)
        B = x0.shape[0]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (B,):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CostError(f"cost {name!r} must return one value per sample, shape ({B},); got {got}")
        if not bool(torch.isfinite(value).all()):
            bad = value.detach().flatten()[:8].tolist()
            raise CostError(f"cost {name!r} returned non-finite values: {bad}")
        if not value.requires_grad:
            raise CostError(f"cost {name!r} does not depend differentiably on x0 (its output has no "
                            f"gradient): compute it from x0 with differentiable torch operations, "
                            f"outside torch.no_grad()")
        (grad,) = torch.autograd.grad(value.sum(), wrt, retain_graph=retain_graph, allow_unused=True)
    if grad is None:
        raise CostError(f"cost {name!r} does not depend on x0")
    if not bool(torch.isfinite(grad).all()):
        raise FloatingPointError(f"the gradient of cost {name!r} is not finite")
    return grad.detach().to(x0.dtype)


def find_costs(expr: Expr) -> list[CostGrad]:
    """Every cost-gradient node of ``expr`` (distinct, in tree order)."""
    return list(dict.fromkeys(n for n in expr.walk() if isinstance(n, CostGrad)))


def unknown_cost(name: str, available: Iterable[str]) -> CostError:
    """The error for a cost nobody supplied: the available ones, with a did-you-mean."""
    valid = sorted(available)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return CostError(f"unknown cost {name!r}{hint} Available costs: {', '.join(valid) or '(none)'}; "
                     f"supply costs={{{name!r}: fn}} when sampling (fn(x0 [B, ...], conditions) -> [B]) "
                     f"or use a model whose modality plugin provides it")
