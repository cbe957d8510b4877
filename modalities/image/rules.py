"""A rule-based check of shape images, written apart from the learned judge: no network, no training.

Each image ``[3, S, S]`` is split into foreground and background by its distance from the known
background colour; the foreground's connected components (8-connected, :func:`scipy.ndimage.label`)
are counted, and the main one is measured. An image is **valid** when all of these hold:

* exactly one object: one component, plus at most :data:`STRAY` pixels of specks;
* big enough: the object covers at least :data:`MIN_AREA` pixels and its box is at most ``S − 1``
  pixels on a side (a blob spread over the whole image is not a shape);
* not stretched: the box's longer side is less than :data:`MAX_ASPECT` × its shorter one;
* no holes: filling the object's holes adds no pixel;
* solid and one colour: the object's inner pixels are close to one palette colour, with a small
  spread (smears and two-tone objects fail), and the background is clean (no noise);
* a known outline: the object's coverage in a 3 × 3 division of its box is close to one of four
  hand-written outlines (circle, square, triangle, cross); ragged or fragmentary objects match none.

The same measurements give a rule-based reading of the shape (the nearest outline) and the colour
(the nearest palette colour of the inner pixels), so accuracy can be counted without a network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .shapes import BACKGROUND, RGB, SHAPES

__all__ = ["OUTLINES", "RuleReading", "read", "read_batch"]

FOREGROUND = 0.3      # max channel difference from the background that counts as foreground
STRAY = 2             # pixels of specks allowed besides the object
MIN_AREA = 10
MAX_ASPECT = 1.5
MAX_SPREAD = 0.12     # std of the inner pixels' colour, per channel
MAX_COLOUR = 0.25     # distance of their mean to the nearest palette colour
MAX_NOISE = 0.06      # mean absolute difference from the background away from the object
MAX_OUTLINE = 0.30    # RMS distance to the nearest outline

# coverage of the 3 × 3 cells of an object's bounding box, row by row from the top: a disc leaves
# its box's corners half empty, a square fills them, a cross fills only the middle row and column,
# an upward triangle is narrow at the top and full along its base. Anti-aliased edge pixels count
# in the box, so full cells read about 0.9 (the figures are the means over 1,000 real renders,
# rounded; they are fixed here, not learned)
OUTLINES = {
    "circle": [0.5, 0.9, 0.5, 0.9, 1, 0.9, 0.5, 0.9, 0.5],
    "square": [0.82, 0.9, 0.82, 0.9, 1, 0.9, 0.82, 0.9, 0.82],
    "triangle": [0.05, 0.64, 0.05, 0.38, 1, 0.38, 0.76, 0.92, 0.76],
    "cross": [0.07, 0.8, 0.07, 0.8, 1, 0.8, 0.07, 0.8, 0.07],
}
_OUTLINES = np.array([OUTLINES[s] for s in SHAPES], dtype=np.float64)  # in SHAPES order
_PALETTE, _BG = RGB.double().numpy(), BACKGROUND.double().numpy()


@dataclass
class RuleReading:
    """What the rules read in one image: ``valid`` and, if any object was found, the index of its
    nearest outline (``shape``, in ``SHAPES`` order) and palette colour (``color``); ``reason``
    names the first rule that failed (empty when valid)."""

    valid: bool
    shape: int
    color: int
    reason: str


def _cells(cover: np.ndarray) -> np.ndarray:
    """Mean coverage of a 3 × 3 division of ``cover`` ``[h, w]`` (cells of fractional size)."""
    h, w = cover.shape
    out = np.zeros(9)
    for i in range(3):
        for j in range(3):
            y0, y1 = i * h / 3, (i + 1) * h / 3
            x0, x1 = j * w / 3, (j + 1) * w / 3
            wy = np.clip(np.minimum(np.arange(h) + 1, y1) - np.maximum(np.arange(h), y0), 0, None)
            wx = np.clip(np.minimum(np.arange(w) + 1, x1) - np.maximum(np.arange(w), x0), 0, None)
            weight = wy[:, None] * wx[None, :]
            out[i * 3 + j] = (cover * weight).sum() / weight.sum()
    return out


def read(image: np.ndarray | torch.Tensor) -> RuleReading:
    """Apply the rules to one image ``[3, S, S]`` in ``[0, 1]``."""
    img = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float64)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"the rules read RGB images [3, S, S], not {list(img.shape)}")
    size = img.shape[-1]
    diff = np.abs(img - _BG[:, None, None]).max(0)                       # [S, S]
    mask = diff > FOREGROUND
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return RuleReading(False, -1, -1, "empty")
    areas = np.bincount(labels.ravel())[1:]
    main = int(areas.argmax()) + 1
    obj = labels == main
    area = int(areas.max())
    stray = int(areas.sum()) - area
    # the object's colour: its core pixels (those at least 80% as far from the background as the
    # farthest one; anti-aliased edges mix in background), which must be one colour
    far = diff * obj
    pixels = img[:, far >= 0.8 * far.max()].T                           # [P, 3]
    mean = pixels.mean(0)
    dist = np.linalg.norm(_PALETTE - mean, axis=1)
    color = int(dist.argmin())
    # coverage of the object's box: the share of the way from background to the object's colour
    ys, xs = np.nonzero(obj)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    span = _PALETTE[color] - _BG
    box = img[:, y0:y1, x0:x1] - _BG[:, None, None]
    cover = np.clip(np.einsum("chw,c->hw", box, span) / (span @ span), 0, 1)
    cover = np.where(ndimage.binary_dilation(obj, np.ones((3, 3)))[y0:y1, x0:x1], cover, 0)
    gaps = np.sqrt(((_OUTLINES - _cells(cover)) ** 2).mean(1))
    shape = int(gaps.argmin())
    h, w = y1 - y0, x1 - x0
    away = ~ndimage.binary_dilation(mask, np.ones((3, 3)), iterations=1)
    noise = float(np.abs(img - _BG[:, None, None])[:, away].mean()) if away.any() else 1.0
    checks = [
        (n - (areas <= STRAY).sum() <= 1 and stray <= STRAY, "two or more objects"),
        (area >= MIN_AREA, "too small"),
        (max(h, w) < size, "spread over the whole image"),
        (max(h, w) < MAX_ASPECT * min(h, w), "stretched"),
        (int(ndimage.binary_fill_holes(obj).sum()) == area, "holes"),
        (noise <= MAX_NOISE, "noisy background"),
        (float(dist.min()) <= MAX_COLOUR and float(pixels.std(0).max()) <= MAX_SPREAD,
         "not one solid colour"),
        (float(gaps.min()) <= MAX_OUTLINE, "no known outline"),
    ]
    failed = [why for ok, why in checks if not ok]
    return RuleReading(not failed, shape, color, failed[0] if failed else "")


def read_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(valid [N] bool, shape [N], color [N])`` of RGB images ``[N, 3, S, S]`` in ``[0, 1]``
    (shape and colour are −1 where no object was found)."""
    readings = [read(x) for x in images.float().clamp(0, 1)]
    return (torch.tensor([r.valid for r in readings], dtype=torch.bool),
            torch.tensor([r.shape for r in readings]), torch.tensor([r.color for r in readings]))
