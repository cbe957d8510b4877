"""Image representations: pixel patches (continuous families) and palette tokens (discrete ones)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from framework.core.plugins import Codec

from .shapes import BACKGROUND, RGB

__all__ = ["PALETTES", "Palette", "Patches"]


class Patches(Codec):
    """Images ``[B, C, S, S]`` in ``[0, 1]`` ↔ patch tokens ``[B, (S/p)², C·p²]`` in ``[−1, 1]``.

    Args:
        size: image side ``S``.
        channels: ``C`` (3 for RGB, 1 for grey).
        patch: patch side ``p`` (must divide ``S``).
    """

    def __init__(self, size: int = 16, channels: int = 3, patch: int = 2) -> None:
        if size % patch:
            raise ValueError(f"patch {patch} does not divide image size {size}")
        self.size, self.channels, self.patch = int(size), int(channels), int(patch)

    @property
    def shape(self) -> tuple[int, int]:
        return ((self.size // self.patch) ** 2, self.channels * self.patch ** 2)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        B, C, _, _ = _check(media, self.channels, self.size)
        p, n = self.patch, self.size // self.patch
        x = media.reshape(B, C, n, p, n, p).permute(0, 2, 4, 1, 3, 5).reshape(B, n * n, C * p * p)
        return x * 2 - 1

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        B, p, n, C = x.shape[0], self.patch, self.size // self.patch, self.channels
        img = x.reshape(B, n, n, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, self.size, self.size)
        return ((img + 1) / 2).clamp(0, 1)


PALETTES: dict[str, torch.Tensor] = {
    "shapes": torch.cat([BACKGROUND[None], RGB]),  # background + the six shape colours
    "grey17": torch.linspace(0, 1, 17)[:, None],  # sklearn digits' 0..16 intensities
}


class Palette(Codec):
    """Images ``[B, C, S, S]`` ↔ token ids ``[B, (S/p)²]``: each pixel's nearest palette colour,
    ``p × p`` pixels per token (a token is the base-``K`` number of its pixels' colour indices).

    ``patch=1`` gives one token per pixel (vocabulary ``K``); ``patch=2`` gives 4× fewer tokens
    from a vocabulary of ``K⁴`` — a fixed, lossless-up-to-palette tokenizer, like a VQ codebook.

    Args:
        size: image side ``S``.
        palette: a name in :data:`PALETTES` or a list of colours (``[K, C]`` in ``[0, 1]``).
        patch: pixels per token side ``p`` (must divide ``S``).
    """

    def __init__(self, size: int = 16, palette: str | Sequence[Sequence[float]] = "shapes",
                 patch: int = 1) -> None:
        if isinstance(palette, str):
            if palette not in PALETTES:
                raise ValueError(f"unknown palette {palette!r}; known: {sorted(PALETTES)}")
            colours = PALETTES[palette]
        else:
            colours = torch.as_tensor(palette, dtype=torch.float32)
        if size % patch:
            raise ValueError(f"patch {patch} does not divide image size {size}")
        self.size, self.patch, self.colours = int(size), int(patch), colours
        self.vocab_size = colours.shape[0] ** (patch * patch)
        self._digits = colours.shape[0] ** torch.arange(patch * patch)  # base-K place values

    @property
    def shape(self) -> tuple[int]:
        return ((self.size // self.patch) ** 2,)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        B, C, S, _ = _check(media, self.colours.shape[1], self.size)
        p, n = self.patch, S // self.patch
        pixels = media.reshape(B, C, n, p, n, p).permute(0, 2, 4, 3, 5, 1).reshape(B, n * n, p * p, 1, C)
        idx = (pixels - self.colours.to(media.device)).pow(2).sum(-1).argmin(-1)  # [B, L, p²]
        return (idx * self._digits.to(media.device)).sum(-1)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        B, p, n, K = x.shape[0], self.patch, self.size // self.patch, self.colours.shape[0]
        idx = (x.long()[..., None] // self._digits.to(x.device)) % K  # [B, L, p²]
        rgb = self.colours.to(x.device)[idx]  # [B, L, p², C]
        return rgb.reshape(B, n, n, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(B, -1, self.size, self.size)


def _check(media: torch.Tensor, channels: int, size: int) -> tuple[int, int, int, int]:
    if media.ndim != 4 or media.shape[1:] != (channels, size, size):
        raise ValueError(f"expected images [B, {channels}, {size}, {size}], got {tuple(media.shape)}")
    return tuple(media.shape)
