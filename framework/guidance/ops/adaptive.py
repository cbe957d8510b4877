"""Adaptive Guidance — *Adaptive Guidance: Training-free Acceleration of Conditional Diffusion
Models* (Castillo et al., 2023).

Guide with ``inner`` until the cosine similarity between the unguided (reference)
prediction and the guided one exceeds ``γ̄`` for every sample of the batch; from then on
evaluate only the reference branch (``ε̃ = ε_c``). The switch is per run and one-way, so
the unconditional branch stops costing forward passes for the rest of sampling.

At high noise every ε-prediction is close to ``x/σ``, so the cosine is near 1 before guidance
has acted; ``after`` (a progress τ) keeps the policy from switching before that point.
"""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.branches import Branch
from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op


class Adaptive(Op):
    """Stop evaluating ``inner``'s extra branches once guidance no longer changes the prediction."""

    def __init__(self, inner: Expr, threshold: float = 0.99, fallback: Expr | None = None,
                 space: str | None = None, after: float = 0.0) -> None:
        inner.check()
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"adaptive threshold is a cosine in [-1, 1], got {threshold}")
        if not 0.0 <= after <= 1.0:
            raise ValueError(f"adaptive 'after' is a progress τ in [0, 1], got {after}")
        self.inner, self.threshold, self.after = inner, float(threshold), float(after)
        self.fallback = fallback if fallback is not None else inner.reference()
        self.fallback.check()
        self.space = space

    def children(self) -> tuple[Expr, ...]:
        return (self.inner, self.fallback)

    def needed(self, tau: float, state: Any) -> frozenset[Branch]:
        if state.of(self).get("switched", False):
            return self.fallback.needed(tau, state)
        return self.inner.needed(tau, state) | self.fallback.needed(tau, state)

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        state = ctx.state.of(self)
        ref = self.fallback.value(ctx, space)
        if state.get("switched", False):
            return ref
        guided = self.inner.value(ctx, space)
        b = guided.shape[0]
        g, r = guided.reshape(b, -1).float(), ref.reshape(b, -1).float()
        both = torch.isfinite(g) & torch.isfinite(r)  # logits: -inf marks excluded tokens
        cos = torch.nn.functional.cosine_similarity(g.where(both, 0.0), r.where(both, 0.0), dim=1)
        ctx.record("adaptive_cosine", float(cos.min()))
        if ctx.tau >= self.after and not ctx.state.corrector and bool((cos > self.threshold).all()):
            state["switched"] = True  # takes effect from the next step on
            state["switched_at_step"] = ctx.state.step
        return guided

    def __repr__(self) -> str:
        return f"adaptive({self.inner!r}, threshold={self.threshold:g}, after={self.after:g})"
