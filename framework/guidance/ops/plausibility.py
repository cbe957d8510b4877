"""The plausibility mask of contrastive decoding — *Contrastive Decoding: Open-ended Text
Generation as Optimization* (Li et al., 2022).

Only tokens the expert itself finds plausible may be chosen:
``V_head = {v : p_E(v) ≥ α · max_u p_E(u)}``; every other token's score is set to a large negative
value (probability 0 after renormalisation). Without it, the expert − amateur contrast favours
tokens both models find implausible. Acts in ``logprobs`` space (mass 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op

#: The score of a masked token: finite (the engine checks guided outputs are finite) but with
#: probability exactly 0 after ``log_softmax`` in float32.
MASKED = -1e9


class PlausibilityMask(Op):
    """``inner`` where the ``reference`` (expert) log-probability is within ``log α`` of its maximum."""

    space = "logprobs"

    def __init__(self, inner: Expr, reference: Expr, alpha: float = 0.1) -> None:
        inner.check()
        reference.check()
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"plausibility alpha must be in (0, 1], got {alpha}")
        self.inner, self.ref, self.alpha = inner, reference, float(alpha)

    def children(self) -> tuple[Expr, ...]:
        return (self.inner, self.ref)

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        ref = torch.log_softmax(self.ref.value(ctx, space).float(), dim=-1)
        keep = ref >= ref.max(dim=-1, keepdim=True).values + math.log(self.alpha)
        return torch.where(keep, self.inner.value(ctx, space).float(), torch.full_like(ref, MASKED))

    def __repr__(self) -> str:
        return f"plausible({self.inner!r}, reference={self.ref!r}, alpha={self.alpha:g})"
