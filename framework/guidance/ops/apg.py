"""APG — *Eliminating Oversaturation and Artifacts of High Guidance Scales in Diffusion Models*
(Sadat et al., 2024).

In x0 space, with ``Δ = D_c − D_u``: momentum ``Δ ← Δ + β·Δ̄_prev`` (β < 0), norm threshold
``Δ ← Δ·min(1, r/‖Δ‖)``, projection on the conditional prediction
``Δ∥ = (⟨Δ, D_c⟩/⟨D_c, D_c⟩)·D_c``, ``Δ⊥ = Δ − Δ∥``; the guided prediction is
``D̃ = D_c + (w − 1)·(Δ⊥ + η·Δ∥)``. With β = 0, r = 0 and η = 1 it is plain CFG.

:class:`Project` is the direction operator ``Δ ↦ Δ⊥ + η·Δ∥`` (with momentum and threshold);
the ``apg`` preset writes ``D_c + (w − 1)·Project(D_c − D_u)``. Because it is a node of the
algebra, it can project any direction of a multi-condition expression.
"""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op


class Project(Op):
    """APG's direction operator (mass 0: the result is a direction).

    Args:
        direction: a direction expression (coefficients sum to 0), e.g. ``cond - uncond``.
        reference: the prediction to project against (``D_c`` in the paper).
        eta: weight of the parallel component (0 removes it — the paper's default).
        momentum: β of the running average; negative values push away from past updates.
        norm_threshold: r; the direction is rescaled to norm ≤ r per sample (0 disables).
        space: where the projection acts; the paper uses ``"x0"``.
    """

    mass_value = 0.0

    def __init__(self, direction: Expr, reference: Expr, eta: float = 0.0, momentum: float = 0.0,
                 norm_threshold: float = 0.0, space: str = "x0") -> None:
        direction.check(expect=0.0)
        reference.check(expect=1.0)
        if norm_threshold < 0:
            raise ValueError(f"APG norm_threshold must be ≥ 0, got {norm_threshold}")
        self.direction, self.ref = direction, reference
        self.eta, self.momentum = float(eta), float(momentum)
        self.norm_threshold = float(norm_threshold)
        self.space = space

    def children(self) -> tuple[Expr, ...]:
        return (self.direction, self.ref)

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        d = self.direction.value(ctx, space)
        if self.momentum != 0.0:
            # The running average advances once per sampler step: a corrector evaluation (Heun)
            # adds the same previous average as its predictor did.
            state = ctx.state.of(self)
            if not ctx.state.corrector:
                state["previous"] = state.get("average")
            if state.get("previous") is not None:
                d = d + self.momentum * state["previous"]
            if not ctx.state.corrector:
                state["average"] = d
        b = d.shape[0]
        if self.norm_threshold > 0:
            norm = d.reshape(b, -1).norm(dim=1).clamp_min(1e-12)
            d = d * (self.norm_threshold / norm).clamp(max=1.0).view(-1, *[1] * (d.ndim - 1))
        # Projection in float64: the parallel part is a small difference of large numbers.
        v0 = d.reshape(b, -1).double()
        v1 = torch.nn.functional.normalize(self.ref.value(ctx, space).reshape(b, -1)
                                           .double(), dim=1)
        parallel = (v0 * v1).sum(dim=1, keepdim=True) * v1
        out = (v0 - parallel) + self.eta * parallel
        return out.to(d.dtype).reshape(d.shape)

    def __repr__(self) -> str:
        return (f"project({self.direction!r}, eta={self.eta:g}, momentum={self.momentum:g}, "
                f"norm_threshold={self.norm_threshold:g}, space={self.space!r})")
