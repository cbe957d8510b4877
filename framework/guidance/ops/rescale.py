"""CFG-rescale — *Common Diffusion Noise Schedules and Sample Steps are Flawed* (Lin et al., 2023).

``x_cfg`` is the guided prediction, ``x_c`` the conditional one; with std over every
non-batch dimension, ``x_resc = x_cfg·std(x_c)/std(x_cfg)`` and
``x_out = φ·x_resc + (1 − φ)·x_cfg`` (φ ≈ 0.7). Declared space: ``x0`` by default (the
paper applies it to v/x0-type outputs); diffusers applies it to whatever the model predicts.
"""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op, sample_dims


class Rescale(Op):
    """Std-matching of a guided prediction to a reference prediction (mass 1)."""

    def __init__(self, inner: Expr, reference: Expr, phi: float = 0.7, space: str = "x0") -> None:
        inner.check()
        reference.check()
        if not 0.0 <= phi <= 1.0:
            raise ValueError(f"CFG-rescale phi must be in [0, 1], got {phi}")
        self.inner, self.ref, self.phi, self.space = inner, reference, float(phi), space

    def children(self) -> tuple[Expr, ...]:
        return (self.inner, self.ref)

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        guided = self.inner.value(ctx, space)
        ref = self.ref.value(ctx, space)
        dims = sample_dims(guided)
        ratio = ref.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
        return self.phi * guided * ratio + (1.0 - self.phi) * guided

    def __repr__(self) -> str:
        return f"rescale({self.inner!r}, phi={self.phi:g}, space={self.space!r})"
