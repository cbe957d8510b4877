"""The image modality's plugin class (registered as ``image`` under ``polyguide.modalities``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import torch

from framework.core.conditions import ConditionSpec
from framework.core.plugins import Codec, LazyClasses, Modality, PluginError
from framework.core.shipped import recipes_dir

from .codecs import Palette, Patches
from .costs import COSTS
from .judges import shapes_or_digits_judge
from .metrics import ImageJudge
from .shapes import COLORS, POSITIONS, SHAPES
from .writers import save_grid, save_images

RECIPES = recipes_dir("image")  # the checkout's recipes/image, or the installed polyguide_recipes.image


class ImageModality(Modality):
    """Images ``[B, C, S, S]`` in ``[0, 1]``."""

    name = "image"
    description = "images: procedural shapes (shape/color/position/text) and sklearn digits"
    representations = MappingProxyType({"patches": Patches, "palette": Palette})
    datamodules = LazyClasses({"shapes": f"{__package__}.data:ShapesData",
                               "digits": f"{__package__}.data:DigitsData"})
    conditions = MappingProxyType({"shape": " | ".join(SHAPES), "color": " | ".join(COLORS),
                                   "position": " | ".join(POSITIONS), "text": "a caption (MiniLM embedding)",
                                   "digit": "0 … 9"})
    recipes_dir = RECIPES
    #: cost-gradient guidance: −log p(attribute = requested | decode(x̂0)) by a clean-image classifier
    costs = MappingProxyType(COSTS)

    def write(self, media: torch.Tensor, out: Path, *, rows: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
        """``grid.png`` (all samples, labelled) and one PNG per image, ``sample_000.png`` …, at
        the model's resolution."""
        out.mkdir(parents=True, exist_ok=True)
        path = out / "grid.png"
        save_grid(media, path, rows=rows, title=title)
        return [path, *save_images(media, out)]

    def demo(self, out: Path, **options) -> dict:
        """``polyguide demo``: the shipped shapes model under several guidances, judged
        (:func:`modalities.image.demo.run_demo`); a missing checkpoint is a :class:`PluginError`."""
        from .demo import CHECKPOINT, run_demo

        if not CHECKPOINT.is_file():
            raise PluginError(f"the demo's checkpoint {CHECKPOINT} is missing; train it with `polyguide fit "
                              f"--config recipes/image/shapes_flow.yaml` (see recipes/README.md), or run "
                              f"`polyguide demo --toy`")
        return run_demo(out, **options)

    def judge(self, specs: Mapping[str, ConditionSpec], codec: Codec, cache_dir: Path) -> ImageJudge:
        """A classifier-based judge for the model's data (digits if it has a ``digit`` condition,
        else shapes at the codec's size), cached as ``cache_dir/classifier-<data><size>.pt``.
        The shapes judge also has a reject class (``reject-classifier-shapes<size>.pt``, trained on
        rendered failure modes) and the rule-based check."""
        return shapes_or_digits_judge(specs, codec.size, Path(cache_dir))
