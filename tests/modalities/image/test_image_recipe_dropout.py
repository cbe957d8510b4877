"""The shapes recipes train the condition subsets their documented guidance evaluates, and the
position-free request `cond(shape, color)` often enough (it was 7.5% of the rows when the dropout
was derived from a guidance list that conditioned on the position; docs/image.md)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from framework.guidance import parse
from framework.model.generative import _dropout_from_config
from modalities.image.data import shapes_specs

RECIPES = Path(__file__).resolve().parents[3] / "recipes" / "image"
NAMES = ("shape", "color", "position")


def _shares(recipe: str, n: int = 40_000) -> tuple[Counter, object]:
    """Share of the training rows that keep each subset of the conditions (sampled)."""
    model = OmegaConf.to_container(OmegaConf.load(RECIPES / recipe).model)
    spec = _dropout_from_config(model["dropout"])
    keep = spec.sample(list(NAMES), n, torch.Generator().manual_seed(0))
    code = sum(keep[c].long() << i for i, c in enumerate(NAMES))  # bit i: condition i kept
    counts = torch.bincount(code, minlength=8).tolist()
    return Counter({frozenset(c for i, c in enumerate(NAMES) if k >> i & 1): counts[k] / n
                    for k in range(8)}), (spec, model)


@pytest.mark.parametrize("recipe", ["shapes_flow.yaml", "shapes_diffusion.yaml"])
def test_shapes_recipes_train_the_position_free_subsets_the_docs_sample(recipe):
    shares, (spec, model) = _shares(recipe)
    assert shares[frozenset({"shape", "color"})] > 0.3  # cond(shape, color): position left free
    assert shares[frozenset(NAMES)] > 0.3  # the full conditional keeps its share
    assert shares[frozenset()] > 0.07  # uncond, CFG's other branch
    for subset in ({"shape"}, {"shape", "color"}):  # a negative prompt's two branches
        assert shares[frozenset(subset)] > 0.05
    for text in model["guidance"]:  # every listed guidance's subsets are trained (raises if not)
        assert spec.check(parse(text), shapes_specs(), strict=True) == []
    assert spec.check(parse("negative((shape, position), color, red, 2)"), shapes_specs(), strict=True) == []
