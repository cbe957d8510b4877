"""Captions in several wordings for the text→image recipe, with held-out paraphrases."""

import re

import pytest
import torch

from framework.core.encoders import minilm
from modalities.image.captions import (
    HELD_OUT,
    TRAIN,
    CaptionedShapesData,
    attributes_named,
    evaluation_captions,
    write,
)
from modalities.image.shapes import COLORS, POSITIONS, SHAPES, SIZES


def _pattern(template: str) -> re.Pattern:
    """A regex matching the template's captions, capturing the words it fills in."""
    words = {"shape": SHAPES, "color": COLORS, "position": POSITIONS, "size": SIZES}
    out = re.escape(template)
    for name, choices in words.items():
        out = out.replace(re.escape("{" + name + "}"), f"(?P<{name}>" + "|".join(choices) + ")")
    return re.compile(out + "$")


def test_held_out_wordings_are_not_training_wordings():
    assert not set(TRAIN) & set(HELD_OUT)
    for t in TRAIN + HELD_OUT:
        assert {"shape", "color"} <= set(attributes_named(t))
    assert write("a {shape} that is {color}", 2, 0, 0, 0) == "a triangle that is red"


def test_each_image_gets_a_caption_of_its_own_attributes_in_a_training_wording():
    dm = CaptionedShapesData(n_train=96, n_val=8)
    images, conds = dm.split("train")
    assert conds["text"].shape == (96, 384) and images.shape == (96, 3, 16, 16)
    texts = dm._train.texts
    used = set()
    for i, text in enumerate(texts):
        matches = [(k, m) for k, t in enumerate(TRAIN) if (m := _pattern(t).match(text))]
        assert matches, f"caption {text!r} is in no training wording"
        k, m = matches[0]
        used.add(k)
        assert m["shape"] == SHAPES[int(conds["shape"][i])] and m["color"] == COLORS[int(conds["color"][i])]
        if "position" in m.groupdict():
            assert m["position"] == POSITIONS[int(conds["position"][i])]
        assert not any(_pattern(t).match(text) for t in HELD_OUT)
    assert used == set(range(len(TRAIN)))  # 96 draws over 6 wordings: every one appears
    # the condition is the caption's MiniLM embedding
    torch.testing.assert_close(conds["text"][:4], minilm(texts[:4]))
    # deterministic splits
    again = CaptionedShapesData(n_train=96, n_val=8)
    again.setup()
    assert again._train.texts == texts


def test_evaluation_captions_ask_for_what_they_name():
    caps = evaluation_captions(HELD_OUT, seed=3, n=12)
    assert len(caps) == 12
    for i, c in enumerate(caps):
        m = _pattern(HELD_OUT[i % len(HELD_OUT)]).match(c.text)
        assert m, c.text
        assert SHAPES[c.requested["shape"]] == m["shape"] and COLORS[c.requested["color"]] == m["color"]
        assert ("position" in c.requested) == ("position" in m.groupdict())


def test_a_template_without_shape_or_colour_is_refused():
    with pytest.raises(ValueError, match=r"'a \{shape\}' must name both"):
        CaptionedShapesData(templates=["a {shape}"])
    with pytest.raises(ValueError, match="at least one"):
        CaptionedShapesData(templates=[])
