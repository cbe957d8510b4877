"""Procedural shapes: a shape of a colour at a position and size, with a caption.

Images are rendered at 4× resolution and box-filtered down, so edges are anti-aliased like real
pictures rather than jagged masks. Every attribute is uniform and independent, so each
condition subset is equally represented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["COLORS", "POSITIONS", "RGB", "SHAPES", "SIZES", "ShapeBatch", "caption", "render"]

SHAPES = ("circle", "square", "triangle", "cross")
COLORS = ("red", "green", "blue", "yellow", "magenta", "cyan")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
SIZES = ("small", "large")
RGB = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.15, 0.3, 0.95],
                    [0.95, 0.85, 0.1], [0.9, 0.15, 0.85], [0.1, 0.85, 0.9]])
BACKGROUND = torch.tensor([0.08, 0.08, 0.1])
_CENTRES = torch.tensor([[0.3, 0.3], [0.7, 0.3], [0.3, 0.7], [0.7, 0.7]])  # (x, y), y down
_RADII = torch.tensor([0.19, 0.27])


@dataclass
class ShapeBatch:
    """Rendered images ``[N, 3, S, S]`` in ``[0, 1]`` and their attribute indices ``[N]`` each."""

    images: torch.Tensor
    shape: torch.Tensor
    color: torch.Tensor
    position: torch.Tensor
    size: torch.Tensor

    def captions(self) -> list[str]:
        return [caption(int(s), int(c), int(p), int(z)) for s, c, p, z in
                zip(self.shape, self.color, self.position, self.size, strict=True)]


def caption(shape: int, color: int, position: int, size: int) -> str:
    """E.g. ``"a small red triangle at the top left"``."""
    return f"a {SIZES[size]} {COLORS[color]} {SHAPES[shape]} at the {POSITIONS[position]}"


def _masks(shape: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor, res: int) -> torch.Tensor:
    """Coverage masks ``[N, res, res]`` in {0, 1}."""
    coords = (torch.arange(res) + 0.5) / res
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    dx = (x[None] - centre[:, 0, None, None]) / radius[:, None, None]
    dy = (y[None] - centre[:, 1, None, None]) / radius[:, None, None]
    circle = dx ** 2 + dy ** 2 <= 1.0
    square = (dx.abs() <= 0.85) & (dy.abs() <= 0.85)
    # upward triangle: apex at the top, base at the bottom
    triangle = (dy <= 0.9) & (dy >= -1.0) & (dx.abs() <= (dy + 1.0) / 1.9 * 1.0)
    cross = ((dx.abs() <= 0.32) & (dy.abs() <= 1.0)) | ((dy.abs() <= 0.32) & (dx.abs() <= 1.0))
    kinds = torch.stack([circle, square, triangle, cross], 1)  # [N, 4, res, res]
    return kinds[torch.arange(len(shape)), shape].float()


def render(n: int, size: int = 16, generator: torch.Generator | None = None, *,
           shape: torch.Tensor | None = None, color: torch.Tensor | None = None,
           position: torch.Tensor | None = None, scale: torch.Tensor | None = None) -> ShapeBatch:
    """Render ``n`` images of ``size × size`` with random (or given ``[n]``) attributes.

    A small random jitter of centre and radius keeps the data from being ``|attributes|`` exact
    templates.
    """
    g = generator

    def pick(given: torch.Tensor | None, k: int) -> torch.Tensor:
        return given.long() if given is not None else torch.randint(k, (n,), generator=g)

    s, c, p, z = pick(shape, len(SHAPES)), pick(color, len(COLORS)), pick(position, len(POSITIONS)), \
        pick(scale, len(SIZES))
    centre = _CENTRES[p] + 0.04 * (torch.rand(n, 2, generator=g) - 0.5)
    radius = _RADII[z] * (1 + 0.1 * (torch.rand(n, generator=g) - 0.5))
    res = size * 4
    cover = F.avg_pool2d(_masks(s, centre, radius, res)[:, None], 4)  # [n, 1, size, size]
    rgb = RGB[c][:, :, None, None]
    images = cover * rgb + (1 - cover) * BACKGROUND[None, :, None, None]
    return ShapeBatch(images.clamp(0, 1), s, c, p, z)
