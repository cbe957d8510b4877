"""The audio decoders' level policy (shared by the mel, EnCodec and WORLD representations)."""

from __future__ import annotations

import torch

__all__ = ["PEAK_TARGET", "limit_peak"]

#: the decoders' level policy: a clip whose peak exceeds this (−1 dBFS) is scaled down to it
PEAK_TARGET = 10 ** (-1 / 20)


def limit_peak(wave: torch.Tensor, target: float = PEAK_TARGET) -> torch.Tensor:
    """The decoders' level policy: each clip of ``wave`` ``[B, ..., T]`` whose peak ``max |x|``
    exceeds ``target`` is scaled by ``target / peak`` (a per-clip gain, so its waveform and
    spectrum keep their shape); quieter clips, silence included, are returned unchanged. Nothing
    is cut at ±1, so no sample reaches full scale. Non-finite samples are set to 0 first."""
    x = torch.nan_to_num(wave.float(), nan=0.0, posinf=0.0, neginf=0.0)
    peak = x.abs().flatten(1).amax(1).reshape(-1, *[1] * (x.ndim - 1))
    return x * (target / peak.clamp_min(target))
