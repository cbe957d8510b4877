"""Renormalisation of log-probabilities for discrete outputs (standard).

Guidance on logits combines per-branch log-probabilities affinely; the result is no longer
normalised. ``log_softmax`` once, after combining and before temperature/top-k/top-p,
gives ``p̃ ∝ p_c^w·p_u^{1−w}`` per position.
"""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op


class Renormalize(Op):
    """``log_softmax`` over the last (vocabulary) dimension, in ``logprobs`` space (mass 1)."""

    space = "logprobs"

    def __init__(self, inner: Expr) -> None:
        inner.check()
        self.inner = inner

    def children(self) -> tuple[Expr, ...]:
        return (self.inner,)

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        return torch.log_softmax(self.inner.value(ctx, space).float(), dim=-1)

    def __repr__(self) -> str:
        return f"renormalize({self.inner!r})"
