"""The metrics: ``polyguide eval`` and validation call ``judge(...).evaluate(media, requested)``."""

from __future__ import annotations

import torch

from .signals import PEAKS

__all__ = ["SpectraJudge"]


class SpectraJudge:
    """Scores signals by their dominant frequency: no training, so nothing to cache."""

    def evaluate(self, media: torch.Tensor, requested: dict[str, torch.Tensor]) -> dict[str, float]:
        """``media`` ``[B, 1, length]`` (decoded signals), ``requested`` ``{"peak": [B] label ids}``
        (absent when ``peak`` was not requested) → ``{"acc_peak": fraction right}``."""
        if "peak" not in requested:
            return {}
        spectrum = torch.fft.rfft(media[:, 0].float()).abs()  # [B, length // 2 + 1]
        cycles = torch.tensor([int(f) for f in PEAKS])
        found = spectrum[:, cycles].argmax(-1)  # which of the four frequencies is strongest
        return {"acc_peak": float((found == requested["peak"]).float().mean())}
