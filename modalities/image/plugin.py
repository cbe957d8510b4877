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
from .failures import render_failures
from .metrics import ImageJudge
from .shapes import COLORS, POSITIONS, SHAPES, render
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


def shapes_or_digits_judge(specs: Mapping[str, ConditionSpec], size: int, folder: Path) -> ImageJudge:
    """The :class:`ImageJudge` of :meth:`ImageModality.judge`, cached in ``folder``."""
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
