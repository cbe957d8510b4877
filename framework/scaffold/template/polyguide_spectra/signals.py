"""The data of the example: 1-D signals with one dominant sinusoid (no Lightning, no I/O)."""

from __future__ import annotations

import math

import torch

__all__ = ["LEVELS", "PEAKS", "make_signals"]

PEAKS = ("1", "2", "4", "8")  # labels of `peak`: cycles per window of the dominant sinusoid
LEVELS = (0.5, 1.5)  # range of `level`: the dominant sinusoid's amplitude


def make_signals(n: int, length: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` signals ``[n, 1, length]`` (values in ``(−2.4, 2.4)``), their ``peak`` label ids ``[n]``
    and their ``level`` ``[n]`` (float).

    Each is a sum of four sinusoids with 1, 2, 4 and 8 cycles per window: the one ``peak`` names has
    amplitude ``level`` (uniform in :data:`LEVELS`), the others at most 0.3, all with random phases.
    """
    g = torch.Generator().manual_seed(seed)
    peak = torch.randint(len(PEAKS), (n,), generator=g)
    level = LEVELS[0] + (LEVELS[1] - LEVELS[0]) * torch.rand(n, generator=g)
    amp = 0.3 * torch.rand(n, len(PEAKS), generator=g)  # weak background components ...
    amp[torch.arange(n), peak] = level  # ... and one dominant one
    phase = 2 * math.pi * torch.rand(n, len(PEAKS), 1, generator=g)
    freq = torch.tensor([float(f) for f in PEAKS])[:, None]
    t = torch.arange(length) / length
    waves = torch.sin(2 * math.pi * freq * t + phase)  # [n, 4, length]
    return (amp[..., None] * waves).sum(1, keepdim=True), peak, level
