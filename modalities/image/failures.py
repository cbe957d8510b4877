"""Rendered failure modes: images that are *not* one clean shape, for the judge's reject class.

Every kind is drawn procedurally from the same palette, background and outlines as the real
renders (:mod:`modalities.image.shapes`); none is a model output. :func:`render_failures` mixes
them; :data:`KINDS` lists them by name (a test renders each one and expects the judge to refuse it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .shapes import _CENTRES, _RADII, BACKGROUND, COLORS, RGB, SHAPES, _masks

__all__ = ["KINDS", "render_failures"]

_SS = 4  # supersampling, as in shapes.render


def _rand(n: int, g: torch.Generator, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _cover(n: int, size: int, g: torch.Generator, radius_scale: float = 1.0,
           hi: bool = False) -> torch.Tensor:
    """Coverage ``[n, 1, S, S]`` (box-filtered from 4× resolution; ``hi``: the 4× one,
    ``[n, 1, 4S, 4S]``) of random shapes at random positions."""
    s = torch.randint(len(SHAPES), (n,), generator=g)
    p = torch.randint(len(_CENTRES), (n,), generator=g)
    centre = _CENTRES[p] + 0.1 * (torch.rand(n, 2, generator=g) - 0.5)
    radius = _RADII[torch.randint(len(_RADII), (n,), generator=g)] * radius_scale
    cover = _masks(s, centre, radius, size * _SS)[:, None]
    return cover if hi else F.avg_pool2d(cover, _SS)


def _paint(cover: torch.Tensor, g: torch.Generator, color: torch.Tensor | None = None) -> torch.Tensor:
    """Images ``[n, 3, S, S]`` from coverage ``[n, 1, S, S]`` in one colour each (random, or
    ``color`` indices ``[n]``)."""
    n = len(cover)
    c = color if color is not None else torch.randint(len(COLORS), (n,), generator=g)
    rgb = RGB[c][:, :, None, None] if c.dim() == 1 else c
    return (cover * rgb + (1 - cover) * BACKGROUND[None, :, None, None]).clamp(0, 1)


def _warp(cover: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, tx: torch.Tensor,
          ty: torch.Tensor) -> torch.Tensor:
    """Coverage ``[n, 1, H, W]`` scaled by ``(sx, sy)`` about the image centre and shifted by
    ``(tx, ty)`` (in units of the image side), outside filled with nothing."""
    theta = torch.zeros(len(cover), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1 / sx, 1 / sy
    theta[:, 0, 2], theta[:, 1, 2] = -2 * tx / sx, -2 * ty / sy
    grid = F.affine_grid(theta, list(cover.shape), align_corners=False)
    return F.grid_sample(cover, grid, align_corners=False, padding_mode="zeros")


def noise(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Pixel noise: the background plus Gaussian noise of random strength, sometimes coloured."""
    base = BACKGROUND[None, :, None, None] + _rand(n, g, 0.1, 0.6)[:, None, None, None] * torch.randn(
        n, 3, size, size, generator=g)
    faint = _paint(_cover(n, size, g), g)  # some noise over a shape
    keep = (torch.rand(n, generator=g) < 0.3)[:, None, None, None]
    return torch.where(keep, faint + 0.4 * torch.randn(n, 3, size, size, generator=g), base).clamp(0, 1)


def blobs(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """One to three soft Gaussian blobs of palette colours, no outline."""
    coords = (torch.arange(size) + 0.5) / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    img = BACKGROUND[None, :, None, None].expand(n, 3, size, size).clone()
    for k in range(3):
        cx, cy = _rand(n, g, 0.15, 0.85), _rand(n, g, 0.15, 0.85)
        sigma = _rand(n, g, 0.05, 0.2)
        amp = _rand(n, g, 0.5, 1.0) * (torch.rand(n, generator=g) < (1.0 if k == 0 else 0.5))
        w = amp[:, None, None] * torch.exp(-((x - cx[:, None, None]) ** 2 + (y - cy[:, None, None]) ** 2)
                                           / (2 * sigma[:, None, None] ** 2))
        rgb = RGB[torch.randint(len(COLORS), (n,), generator=g)][:, :, None, None]
        img = img * (1 - w[:, None]) + rgb * w[:, None]
    return img.clamp(0, 1)


def several(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Two or three shapes in one image (same or different colours, apart or touching)."""
    img = _paint(_cover(n, size, g), g)
    for k in range(2):
        cover = _cover(n, size, g, radius_scale=float(_rand(1, g, 0.4, 1.0)))
        same = torch.rand(n, generator=g) < 0.5
        other = RGB[torch.randint(6, (n,), generator=g)]
        rgb = torch.where(same[:, None], img.flatten(2).max(2).values, other)
        use = (torch.rand(n, generator=g) < (1.0 if k == 0 else 0.4))[:, None, None, None]
        img = torch.where(use, img * (1 - cover) + rgb[:, :, None, None] * cover, img)
    return img.clamp(0, 1)


def cut_off(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A shape whose centre lies near an edge of the image, so a third to two thirds of it is cut off."""
    s = torch.randint(len(SHAPES), (n,), generator=g)
    centre = _rand(2 * n, g, 0.25, 0.75).view(n, 2)
    axis = torch.randint(2, (n,), generator=g)
    edge = torch.where(torch.rand(n, generator=g) < 0.5, _rand(n, g, -0.05, 0.08), _rand(n, g, 0.92, 1.05))
    centre[torch.arange(n), axis] = edge
    radius = _RADII[torch.randint(len(_RADII), (n,), generator=g)] * _rand(n, g, 1.0, 1.3)
    return _paint(F.avg_pool2d(_masks(s, centre, radius, size * _SS)[:, None], _SS), g)


def holes(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A large shape with one or two background-coloured holes punched inside it."""
    s = torch.randint(len(SHAPES), (n,), generator=g)
    centre = _CENTRES[torch.randint(4, (n,), generator=g)] + 0.04 * (torch.rand(n, 2, generator=g) - 0.5)
    radius = _RADII[1] * _rand(n, g, 1.0, 1.2)
    res = size * _SS
    cover = _masks(s, centre, radius, res)
    coords = (torch.arange(res) + 0.5) / res
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    for _ in range(2):
        hc = centre + radius[:, None] * 0.5 * (torch.rand(n, 2, generator=g) - 0.5)
        hr = radius * _rand(n, g, 0.2, 0.4)
        hole = ((x - hc[:, 0, None, None]) ** 2 + (y - hc[:, 1, None, None]) ** 2) <= hr[:, None, None] ** 2
        cover = cover * ~hole
    return _paint(F.avg_pool2d(cover[:, None].float(), _SS), g)


def ragged(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A shape whose outline is eaten and grown at random: jagged edges, bites and spurs."""
    cover = _cover(n, size, g)  # [n, 1, S, S]
    edge = (cover > 0.02) & (cover < 0.98)
    near = F.max_pool2d(cover, 3, 1, 1) > 0.5
    flip = torch.rand(cover.shape, generator=g) < _rand(n, g, 0.3, 0.7)[:, None, None, None]
    bite = (torch.rand(cover.shape, generator=g) < 0.25) & (cover > 0.5)
    out = torch.where(flip & (edge | near), 1 - cover.round(), cover)
    return _paint(torch.where(bite, torch.zeros_like(out), out), g)


def stretched(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A shape stretched 1.6–2.8× along one axis (or squeezed along the other)."""
    cover = _cover(n, size, g, radius_scale=0.8, hi=True)
    k = _rand(n, g, 1.6, 2.8)
    along_x = torch.rand(n, generator=g) < 0.5
    squeeze = torch.rand(n, generator=g) < 0.3
    big = torch.where(squeeze, torch.ones(n), k)
    small = torch.where(squeeze, 1 / k, torch.ones(n))
    sx, sy = torch.where(along_x, big, small), torch.where(along_x, small, big)
    t = 0.15 * (torch.rand(n, 2, generator=g) - 0.5)
    # stretch about the shape's own centre: shift it to the middle first
    cy, cx = _centre_of(cover)
    moved = _warp(cover, torch.ones(n), torch.ones(n), 0.5 - cx, 0.5 - cy)
    return _paint(F.avg_pool2d(_warp(moved, sx, sy, t[:, 0], t[:, 1]), _SS), g)


def _centre_of(cover: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid ``(y, x)`` ``[n]`` each of coverage ``[n, 1, H, W]``, in units of the side."""
    h = cover.shape[-1]
    coords = (torch.arange(h) + 0.5) / h
    mass = cover.sum((1, 2, 3)).clamp(min=1e-6)
    return ((cover.sum((1, 3)) * coords).sum(1) / mass, (cover.sum((1, 2)) * coords).sum(1) / mass)


def smears(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A shape dragged along a line (motion blur) or painted in two colours."""
    cover = _cover(n, size, g)
    length = int(torch.randint(6, 11, (1,), generator=g))
    kernel = torch.zeros(2, 1, length, length)
    kernel[0, 0, length // 2] = 1 / length                 # horizontal
    kernel[1, 0] = torch.eye(length) / length              # diagonal
    pick = torch.randint(2, (n,), generator=g)
    pad = (length // 2, length - 1 - length // 2) * 2
    both = F.conv2d(F.pad(cover, pad), kernel)  # [n, 2, S, S]: both directions
    dragged = both[torch.arange(n), pick][:, None]
    dragged = dragged / dragged.amax((1, 2, 3), keepdim=True).clamp(min=1e-6)
    smeared = _paint(torch.maximum(dragged, cover * 0.6), g)
    # two-tone: the shape split between two palette colours along a random line
    c1, c2 = torch.randint(6, (n,), generator=g), torch.randint(6, (n,), generator=g)
    c2 = torch.where(c2 == c1, (c1 + 3) % 6, c2)
    coords = (torch.arange(size) + 0.5) / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    cy, cx = _centre_of(cover)  # split through the shape's centre
    angle = _rand(n, g, 0, 3.1416)
    side = (torch.cos(angle)[:, None, None] * (x - cx[:, None, None])
            + torch.sin(angle)[:, None, None] * (y - cy[:, None, None])
            + 0.1 * (torch.rand(n, 1, 1, generator=g) - 0.5)) > 0
    rgb = torch.where(side[:, None], RGB[c1][:, :, None, None], RGB[c2][:, :, None, None])
    cover = F.max_pool2d(cover, 3, 1, 1) if size > 8 else cover
    two = (cover * rgb + (1 - cover) * BACKGROUND[None, :, None, None]).clamp(0, 1)
    return torch.where((torch.rand(n, generator=g) < 0.5)[:, None, None, None], smeared, two)


def blur(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A shape under a Gaussian blur of 1–2 pixels (no edge left)."""
    img = _paint(_cover(n, size, g), g)
    sigma = float(_rand(1, g, 1.0, 2.0))
    r = torch.arange(-4, 5, dtype=torch.float32)
    k = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    pad = img - BACKGROUND[None, :, None, None]
    pad = F.conv2d(pad.reshape(-1, 1, size, size), k.view(1, 1, 1, -1), padding=(0, 4))
    pad = F.conv2d(pad, k.view(1, 1, -1, 1), padding=(4, 0)).reshape(n, 3, size, size)
    return (pad + BACKGROUND[None, :, None, None]).clamp(0, 1)


def empty(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Nearly nothing: the bare background, a faint ghost of a shape, or a speck."""
    ghost = _paint(_cover(n, size, g) * _rand(n, g, 0.0, 0.25)[:, None, None, None], g)
    speck = _paint(_cover(n, size, g, radius_scale=0.25), g)
    return torch.where((torch.rand(n, generator=g) < 0.7)[:, None, None, None], ghost, speck)


def fragments(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A shape broken into pieces: random blocks of it removed, pieces scattered."""
    img = _paint(_cover(n, size, g, radius_scale=1.1), g)
    block = 2 if size <= 16 else 4
    draw = torch.rand(n, 1, size // block, size // block, generator=g)
    keep = draw < _rand(n, g, 0.35, 0.7)[:, None, None, None]
    keep = F.interpolate(keep.float(), scale_factor=block, mode="nearest")
    cut = img * keep + (1 - keep) * BACKGROUND[None, :, None, None]
    shift = torch.randint(-3, 4, (2,), generator=g)
    rest = img * (1 - keep) + keep * BACKGROUND[None, :, None, None]
    stray = torch.roll(rest, tuple(shift.tolist()), (2, 3))
    scatter = torch.rand(n, generator=g) < 0.5
    mixed = torch.maximum(cut, stray)
    return torch.where(scatter[:, None, None, None], mixed, cut)


KINDS: dict[str, Callable[[int, int, torch.Generator], torch.Tensor]] = {
    "noise": noise, "blobs": blobs, "several": several, "cut_off": cut_off, "holes": holes,
    "ragged": ragged, "stretched": stretched, "smears": smears, "blur": blur, "empty": empty,
    "fragments": fragments,
}


def render_failures(n: int, size: int = 16, generator: torch.Generator | None = None,
                    kinds: tuple[str, ...] | None = None) -> torch.Tensor:
    """``n`` failure images ``[n, 3, S, S]`` in ``[0, 1]``, spread evenly over ``kinds`` (all by
    default) and shuffled."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    names = kinds or tuple(KINDS)
    unknown = set(names) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown failure kinds {sorted(unknown)}; known: {sorted(KINDS)}")
    counts = [n // len(names) + (i < n % len(names)) for i in range(len(names))]
    parts = [KINDS[k](c, size, g) for k, c in zip(names, counts, strict=True) if c]
    out = torch.cat(parts)
    return out[torch.randperm(n, generator=g)]
