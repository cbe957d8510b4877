"""Guidance that leaves the voice source alone: guide the spectral envelope, keep F0 as conditioned.

The ``world`` representation writes, per 10-ms frame, ``lf0``, ``vuv``, ``cap`` (the source: pitch,
voicing, aperiodicity) and 40 envelope coefficients (the filter: what the word sounds like).
Classifier-free guidance extrapolates *every* channel along ``cond − uncond``; on the source
channels that extrapolation moves F0 by a multiple of the conditional's own pitch move, so a
guided voice leaves the requested speaker's pitch (docs/audio.md, "Pitch under guidance").
:class:`KeepChannels` takes the chosen channels from a reference prediction (usually the
fully conditional one) and everything else from the guided one, per frame, in ``x0`` space.

This is a non-affine operation of the guidance algebra (a :class:`~framework.guidance.ops.base.Op`),
built in Python (``source_kept(guided, reference)``); the text syntax has no per-channel weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op

__all__ = ["SOURCE_CHANNELS", "KeepChannels", "source_kept"]

#: the source channels of a ``world`` frame: lf0, vuv, cap (see :mod:`.world`)
SOURCE_CHANNELS = (0, 1, 2)


class KeepChannels(Op):
    """``where(channel ∈ keep, reference, guided)`` on ``x0`` predictions ``[B, tokens, k · dim]``
    whose last axis packs ``k`` frames of ``dim`` channels each (mass 1).

    Args:
        guided: the guided expression (e.g. ``cfg(word, 3)``).
        reference: the expression whose ``keep`` channels are used (e.g. ``cond(word, speaker, pitch)``).
        keep: channel indices within one frame, each in ``[0, dim)``.
        dim: channels per frame (43 for the default ``world`` representation).
    """

    def __init__(self, guided: Expr, reference: Expr, keep: Sequence[int] = SOURCE_CHANNELS,
                 dim: int = 43, space: str = "x0") -> None:
        guided.check()
        reference.check()
        keep = tuple(int(c) for c in keep)
        if not keep or any(not 0 <= c < dim for c in keep):
            raise ValueError(f"channels to keep must lie in [0, {dim}), got {keep}")
        self.guided, self.ref, self.keep, self.dim, self.space = guided, reference, keep, int(dim), space

    def children(self) -> tuple[Expr, ...]:
        return (self.guided, self.ref)

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        guided = self.guided.value(ctx, space)
        ref = self.ref.value(ctx, space)
        if guided.shape[-1] % self.dim:
            raise ValueError(f"keep-channels guidance: last axis {guided.shape[-1]} is not a whole number of "
                             f"{self.dim}-channel frames")
        mask = torch.zeros(self.dim, dtype=torch.bool, device=guided.device)
        mask[list(self.keep)] = True
        mask = mask.repeat(guided.shape[-1] // self.dim)  # [k · dim]
        return torch.where(mask, ref, guided)

    def __repr__(self) -> str:
        return f"keep_channels({self.guided!r}, {self.ref!r}, keep={list(self.keep)})"


def source_kept(guided: Expr | str, reference: Expr | str, keep: Sequence[int] = SOURCE_CHANNELS,
                dim: int = 43) -> KeepChannels:
    """:class:`KeepChannels` from expressions or their text (``framework.guidance.syntax``)."""
    from framework.guidance.syntax import parse

    g = parse(guided) if isinstance(guided, str) else guided
    r = parse(reference) if isinstance(reference, str) else reference
    return KeepChannels(g, r, keep, dim)
