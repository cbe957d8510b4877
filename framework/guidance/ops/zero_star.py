"""CFG-Zero* — *CFG-Zero*: Improved Classifier-Free Guidance for Flow Matching Models* (Fan et al., 2025).

Per sample ``s* = ⟨v_c, v_u⟩/‖v_u‖²`` and ``ṽ = s*·v_u + w·(v_c − s*·v_u)``; for the first
``zero_init_steps`` steps ``ṽ = 0`` and no branch is evaluated (NFE 0). Declared space:
``flow_v``. Coefficients sum to ``w + (1 − w)·s*`` — data dependent, hence non-affine.
"""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.branches import Branch
from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op
from framework.guidance.schedules import Weight


class ZeroStar(Op):
    """The CFG-Zero* combination of a conditional and an unconditional prediction (mass 1)."""

    def __init__(self, cond: Expr, uncond: Expr, w: Weight, zero_init_steps: int = 1,
                 space: str = "flow_v") -> None:
        cond.check()
        uncond.check()
        if zero_init_steps < 0:
            raise ValueError(f"zero_init_steps must be ≥ 0, got {zero_init_steps}")
        self.cond, self.uncond, self.w = cond, uncond, w
        self.zero_init_steps, self.space = int(zero_init_steps), space

    def children(self) -> tuple[Expr, ...]:
        return (self.cond, self.uncond)

    def needed(self, tau: float, state: Any) -> frozenset[Branch]:
        if state.step < self.zero_init_steps:
            return frozenset()
        return super().needed(tau, state)

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        if ctx.state.step < self.zero_init_steps:
            return torch.zeros_like(ctx.x)
        vc, vu = self.cond.value(ctx, space), self.uncond.value(ctx, space)
        b = vc.shape[0]
        fc, fu = vc.reshape(b, -1).float(), vu.reshape(b, -1).float()
        s = ((fc * fu).sum(1) / (fu.pow(2).sum(1) + 1e-8)).to(vc.dtype)
        vu = vu * s.view(-1, *[1] * (vc.ndim - 1))
        ctx.record("zero_star_scale", float(s.mean()))
        return vu + self.w(ctx.tau) * (vc - vu)

    def __repr__(self) -> str:
        return (f"cfg_zero_star({self.cond!r}, {self.uncond!r}, w={self.w!r}, "
                f"zero_init_steps={self.zero_init_steps})")
