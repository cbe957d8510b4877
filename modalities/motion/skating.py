"""Foot skating: toes that slide while on the ground (a physics metric the judge and
:func:`~modalities.motion.physics.physics` share)."""

from __future__ import annotations

import torch

__all__ = ["SKATE_HEIGHT", "SKATE_STEP", "foot_skating"]

SKATE_HEIGHT = 0.05
SKATE_STEP = 0.025


def foot_skating(positions: torch.Tensor) -> float:
    """Fraction of frame pairs of ``[B, T, 22, 3]`` with a toe below 5 cm at both frames sliding > 2.5 cm."""
    toes = positions[..., [10, 11], :]
    low = (toes[:, 1:, :, 1] < SKATE_HEIGHT) & (toes[:, :-1, :, 1] < SKATE_HEIGHT)
    step = (toes[:, 1:, :, [0, 2]] - toes[:, :-1, :, [0, 2]]).norm(dim=-1)
    return float((low & (step > SKATE_STEP)).any(-1).float().mean())
