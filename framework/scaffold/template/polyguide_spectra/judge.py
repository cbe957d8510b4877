"""The metrics: ``polyguide eval`` and validation call ``judge(...).evaluate(media, requested)``."""

from __future__ import annotations

import torch

from .signals import LEVELS, PEAKS

__all__ = ["SpectraJudge"]


class SpectraJudge:
    """Scores signals by their spectrum: no training, so nothing to cache.

    ``peak`` is categorical: eval draws label ids itself. ``level`` is a scalar: eval asks
    :meth:`request` for the values to sample, then scores them here.
    """

    conditions = ("peak", "level")  # the conditions it scores

    def request(self, name: str, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """``n`` values of the scalar ``level`` to ask for (uniform in its training range); ``None``
        for a condition this judge does not draw."""
        if name != "level":
            return None
        return LEVELS[0] + (LEVELS[1] - LEVELS[0]) * torch.rand(n, generator=generator)

    def evaluate(self, media: torch.Tensor, requested: dict[str, torch.Tensor]) -> dict[str, float]:
        """``media`` ``[B, 1, length]`` (decoded signals); ``requested`` holds the conditions asked
        for: ``"peak"`` ``[B]`` label ids, ``"level"`` ``[B]`` floats → ``acc_peak`` (the fraction
        whose strongest of the four frequencies is the requested one) and ``level_err`` (mean
        absolute error of the strongest component's amplitude)."""
        length = media.shape[-1]
        spectrum = torch.fft.rfft(media[:, 0].float()).abs() * 2 / length  # amplitude per frequency
        cycles = torch.tensor([int(f) for f in PEAKS])
        strongest = spectrum[:, cycles].max(-1)  # its amplitude and which of the four it is
        out = {}
        if "peak" in requested:
            out["acc_peak"] = float((strongest.indices == requested["peak"]).float().mean())
        if "level" in requested:
            out["level_err"] = float((strongest.values - requested["level"].float()).abs().mean())
        return out
