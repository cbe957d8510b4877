"""The image modality's plugin class (registered as ``image`` under ``polyguide.modalities``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import torch

from framework.conditions import ConditionSpec
from framework.plugins import Codec, Modality

from .codecs import Palette, Patches
from .data import DigitsData, ShapesData
from .metrics import ImageJudge
from .shapes import COLORS, POSITIONS, SHAPES, render
from .writers import save_grid

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "image"


class ImageModality(Modality):
    """Images ``[B, C, S, S]`` in ``[0, 1]``."""

    name = "image"
    description = "images: procedural shapes (shape/color/position/text) and sklearn digits"
    representations = MappingProxyType({"patches": Patches, "palette": Palette})
    datamodules = MappingProxyType({"shapes": ShapesData, "digits": DigitsData})
    conditions = MappingProxyType({"shape": " | ".join(SHAPES), "color": " | ".join(COLORS),
                                   "position": " | ".join(POSITIONS), "text": "a caption (MiniLM embedding)",
                                   "digit": "0 … 9"})
    recipes_dir = RECIPES

    def write(self, media: torch.Tensor, out: Path, *, rows: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "grid.png"
        save_grid(media, path, rows=rows, title=title)
        return [path]

    def judge(self, specs: Mapping[str, ConditionSpec], codec: Codec, cache_dir: Path) -> ImageJudge:
        """A classifier-based judge for the model's data (digits if it has a ``digit`` condition,
        else shapes at the codec's size), cached as ``cache_dir/classifier-<data><size>.pt``."""
        size = codec.size
        if "digit" in specs:
            dm = DigitsData(size=size)
            real, held = dm.split("train"), dm.split("val")
            labels, name = {"digit": 10}, f"digits{size}"
        else:
            def split(n: int, seed: int):
                b = render(n, size, torch.Generator().manual_seed(seed))
                return b.images, {"shape": b.shape, "color": b.color, "position": b.position}

            real, held = split(8000, 1000), split(1000, 1001)  # seeds apart from the training data's
            labels, name = {"shape": len(SHAPES), "color": len(COLORS), "position": len(POSITIONS)}, \
                f"shapes{size}"
        return ImageJudge(real, held, labels, Path(cache_dir) / f"classifier-{name}.pt")
