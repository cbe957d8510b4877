"""The image judges' data: a classifier of shapes (with a reject class and the rule check) or of
digits, trained on real renders apart from the training data's."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from framework.core.conditions import ConditionSpec

from .failures import render_failures
from .metrics import ImageJudge
from .shapes import COLORS, POSITIONS, SHAPES, render

__all__ = ["judge_data", "judge_heads", "shapes_or_digits_judge"]


def shapes_or_digits_judge(specs: Mapping[str, ConditionSpec], size: int, folder: Path) -> ImageJudge:
    """The :class:`ImageJudge` of :meth:`~modalities.image.plugin.ImageModality.judge`, cached in
    ``folder``."""
    real, held, labels, name = judge_data(specs, size)
    if "digit" in specs:
        return ImageJudge(real, held, labels, folder / f"classifier-{name}.pt")

    def failures(n: int, seed: int) -> torch.Tensor:
        return render_failures(n, size, torch.Generator().manual_seed(3000 + seed))

    return ImageJudge(real, held, labels, folder / f"classifier-{name}.pt", failures=failures, rules=True)


def judge_data(specs: Mapping[str, ConditionSpec], size: int, seed_offset: int = 0):
    """``(train split, held-out split, heads, name)`` for a classifier of a model's images: digits
    if it has a ``digit`` condition, else shapes rendered from seeds ``1000 + seed_offset`` (apart
    from the training data's). Each split is ``(images [N, C, S, S], {attribute: labels [N]})``."""
    heads, name = judge_heads(specs, size)
    if "digit" in specs:
        from .data import DigitsData

        dm = DigitsData(size=size)
        return dm.split("train"), dm.split("val"), heads, name

    def split(n: int, seed: int):
        b = render(n, size, torch.Generator().manual_seed(seed + seed_offset))
        return b.images, {"shape": b.shape, "color": b.color, "position": b.position}

    return split(8000, 1000), split(1000, 1001), heads, name


def judge_heads(specs: Mapping[str, ConditionSpec], size: int) -> tuple[dict[str, int], str]:
    """The classifier heads (attribute → number of labels) and data name for a model's images."""
    if "digit" in specs:
        return {"digit": 10}, f"digits{size}"
    return {"shape": len(SHAPES), "color": len(COLORS), "position": len(POSITIONS)}, f"shapes{size}"
