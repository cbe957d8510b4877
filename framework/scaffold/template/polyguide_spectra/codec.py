"""The ``patches`` representation: signals cut into continuous tokens."""

from __future__ import annotations

import torch

from framework.core.plugins import Codec

__all__ = ["SpectraCodec"]


class SpectraCodec(Codec):
    """Signals ``[B, 1, length]`` ↔ continuous tokens ``[B, length / patch, patch]`` in ``(−1, 1)``.

    Args:
        length: samples per signal.
        patch: samples per token (must divide ``length``).
        scale: signals are divided by it on encoding (the data's amplitude bound).
    """

    def __init__(self, length: int = 32, patch: int = 4, scale: float = 2.5) -> None:
        if length % patch:
            raise ValueError(f"patch {patch} does not divide length {length}")
        self.length, self.patch, self.scale = int(length), int(patch), float(scale)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.length // self.patch, self.patch)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        """``[B, 1, length]`` → ``[B, length / patch, patch]``."""
        if media.ndim != 3 or tuple(media.shape[1:]) != (1, self.length):
            raise ValueError(f"expected signals [B, 1, {self.length}], got {tuple(media.shape)}")
        return media.reshape(media.shape[0], *self.shape) / self.scale

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, length / patch, patch]`` → ``[B, 1, length]``."""
        return x.reshape(x.shape[0], 1, self.length) * self.scale
