"""Base class for non-affine operations."""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.expr import Expr


def sample_dims(t: torch.Tensor) -> tuple[int, ...]:
    """Every dimension but the batch: statistics are per sample."""
    return tuple(range(1, t.ndim))


class Op(Expr):
    """A non-affine node. It evaluates its inputs in :attr:`space`, computes, and converts
    the result to whatever space its parent asks for, using its :attr:`mass_value`
    (1 for a prediction, 0 for a direction) so that directions convert without the
    ``x_t`` offset.

    Per-run state (momentum buffers, switch flags) lives in ``ctx.state.of(self)``, a dict
    created fresh for every sampling run.
    """

    #: The prediction space the op acts in; ``None`` acts in whatever space it is asked for.
    space: str | None = "x0"

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        """The op's output in ``space`` (= :attr:`space` unless that is ``None``)."""
        raise NotImplementedError

    def value(self, ctx: Any, space: str) -> torch.Tensor:
        own = self.space or space
        return ctx.convert(self.compute(ctx, own), own, space, mass=self.mass_value)
