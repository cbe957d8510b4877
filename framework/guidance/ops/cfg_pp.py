"""CFG++ — *CFG++: Manifold-constrained Classifier Free Guidance for Diffusion Models* (Chung et al., 2024).

``ε̃_λ = ε_u + λ(ε_c − ε_u)`` with ``λ ∈ [0, 1]`` denoises (``x̂0`` from ``ε̃_λ``) while the
re-noising step of DDIM uses the *unconditional* ``ε_u``. The expression therefore carries
two predictions; the sampler reads ``GuidedOutput.renoise``.
"""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.expr import Expr


class Renoised(Expr):
    """A guided prediction with a separate prediction for re-noising (top level only)."""

    def __init__(self, denoise: Expr, renoise: Expr) -> None:
        denoise.check()
        renoise.check()
        self.denoise, self.renoise = denoise, renoise

    def children(self) -> tuple[Expr, ...]:
        return (self.denoise, self.renoise)

    def mass(self, tau: float = 0.5) -> float:
        return 1.0

    def _flatten(self, tau: float, scale: float, out: dict) -> None:
        self.denoise._flatten(tau, scale, out)

    def value(self, ctx: Any, space: str) -> torch.Tensor:
        return self.denoise.value(ctx, space)

    def __repr__(self) -> str:
        return f"cfg_pp(denoise={self.denoise!r}, renoise={self.renoise!r})"
