"""The codebook delay pattern for multi-codebook tokens (MusicGen-style).

Audio codecs such as EnCodec emit ``K`` codebooks per frame. Predicting all ``K`` tokens of a
frame at once ignores their dependence; predicting them one by one costs ``K`` steps per frame.
The delay pattern shifts codebook ``k`` right by ``k`` frames, so at each decoding step the model
emits one token per codebook while codebook ``k`` of frame ``t`` already sees codebooks ``< k`` of
frame ``t``: ``T`` frames take ``T + K − 1`` steps.
"""

from __future__ import annotations

import torch

__all__ = ["delay", "pad_mask", "undelay"]


def delay(codes: torch.Tensor, pad: int) -> torch.Tensor:
    """``[B, K, T]`` → ``[B, K, T + K − 1]``: codebook ``k`` shifted right by ``k``, ``pad`` elsewhere."""
    B, K, T = codes.shape
    out = torch.full((B, K, T + K - 1), pad, dtype=codes.dtype, device=codes.device)
    for k in range(K):
        out[:, k, k:k + T] = codes[:, k]
    return out


def undelay(delayed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`delay`: ``[B, K, T + K − 1]`` → ``[B, K, T]``."""
    K, L = delayed.shape[1:]
    T = L - K + 1
    return torch.stack([delayed[:, k, k:k + T] for k in range(K)], dim=1)


def pad_mask(K: int, T: int, device: torch.device | None = None) -> torch.Tensor:
    """Bool ``[T + K − 1, K]``: where the delay pattern holds padding (step-major)."""
    s = torch.arange(T + K - 1, device=device)[:, None]
    k = torch.arange(K, device=device)[None, :]
    return (s < k) | (s >= T + k)
