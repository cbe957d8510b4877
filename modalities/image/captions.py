"""Free-form captions for the shapes data: several wordings per attribute combination, with some
wordings held out of training, so a text→image model can be judged on paraphrases it never saw.

A template is a format string over ``{shape}``, ``{color}``, ``{position}`` and ``{size}``; every
template names the shape and the colour, some also the position or the size. Training draws one
training template per image (so the same picture is described in several ways across the data);
evaluation asks for captions written with the held-out templates.

For validation while training (``val_guidance``), :meth:`CaptionedShapesData.val_conditions` asks
for held-out paraphrases and :meth:`CaptionedShapesData.score` judges the samples on the
attributes each caption names, with the image judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from framework.core.conditions import Conditions
from framework.core.shipped import recipes_dir

from .data import TEXT_ENCODER, ShapesData, _Tensors, shapes_specs
from .shapes import COLORS, POSITIONS, SHAPES, SIZES, render

__all__ = ["HELD_OUT", "TRAIN", "Caption", "CaptionedShapesData", "attributes_named", "evaluation_captions",
           "write"]

#: wordings seen in training
TRAIN = (
    "a {size} {color} {shape} at the {position}",
    "a {color} {shape}",
    "a {shape} coloured {color}",
    "a {size} {shape} in {color}",
    "{color} {shape}, {position}",
    "a {shape}, {color}, at the {position}",
)
#: paraphrases never seen in training
HELD_OUT = (
    "a {shape} that is {color}",
    "there is a {color} {shape} in the {position} corner",
    "one {size} {shape} painted {color}",
    "{color} coloured {shape} on a dark background",
)


def attributes_named(template: str) -> tuple[str, ...]:
    """The attributes a template mentions, e.g. ``("shape", "color")``."""
    return tuple(a for a in ("shape", "color", "position", "size") if "{" + a + "}" in template)


def write(template: str, shape: int, color: int, position: int, size: int) -> str:
    """One caption: ``template`` filled with the attributes' words (indices into the label lists)."""
    return template.format(shape=SHAPES[shape], color=COLORS[color], position=POSITIONS[position],
                           size=SIZES[size])


@dataclass(frozen=True)
class Caption:
    """A caption and the attribute labels it asks for (only those it names)."""

    text: str
    requested: dict[str, int]


class CaptionedShapesData(ShapesData):
    """:class:`ShapesData` whose ``text`` condition is a caption in one of several wordings.

    Each image's caption uses a template drawn uniformly from ``templates`` (seeded, so the splits
    are deterministic); the categorical ``shape``/``color``/``position`` labels stay in the batch
    for scoring. Only distinct captions are embedded (MiniLM, cached per string).

    Args:
        templates: the training wordings (default :data:`TRAIN`); :data:`HELD_OUT` is for evaluation.
        size, n_train, n_val, batch_size, seed: as :class:`ShapesData`.
        judge_dir: the folder of the classifier :meth:`score` uses (``classifier-shapes<size>.pt``,
            trained there if missing); default: the shipped ``recipes/image/checkpoints`` if
            present (the report's judge), else ``~/.cache/polyguide/image``.
    """

    def __init__(self, size: int = 16, n_train: int = 20_000, n_val: int = 1_000, batch_size: int = 64,
                 templates: tuple[str, ...] | list[str] = TRAIN, seed: int = 0,
                 judge_dir: str | None = None) -> None:
        super().__init__(size, n_train, n_val, batch_size, text=True, seed=seed)
        self.judge_dir = Path(judge_dir).expanduser() if judge_dir else None
        self._judge = None
        if not templates:
            raise ValueError("CaptionedShapesData needs at least one caption template")
        for t in templates:
            named = attributes_named(t)
            if "shape" not in named or "color" not in named:
                raise ValueError(f"caption template {t!r} must name both {{shape}} and {{color}}")
        self.templates = tuple(templates)

    def captions(self, shape: torch.Tensor, color: torch.Tensor, position: torch.Tensor,
                 size: torch.Tensor, generator: torch.Generator) -> list[str]:
        """One caption per image (attribute indices ``[N]`` each), in a random training wording."""
        pick = torch.randint(len(self.templates), (len(shape),), generator=generator)
        return [write(self.templates[int(k)], int(s), int(c), int(p), int(z))
                for k, s, c, p, z in zip(pick, shape, color, position, size, strict=True)]

    def _split(self, n: int, seed: int) -> _Tensors:
        from framework.core.encoders import resolve

        g = torch.Generator().manual_seed(seed)
        b = render(n, self.size, g)
        texts = self.captions(b.shape, b.color, b.position, b.size, g)
        unique = sorted(set(texts))
        index = {t: i for i, t in enumerate(unique)}
        table = resolve(TEXT_ENCODER)(unique)  # [U, 384]
        embedded = table[torch.tensor([index[t] for t in texts])]
        conds = {"shape": b.shape, "color": b.color, "position": b.position, "text": embedded}
        out = _Tensors(b.images, conds)
        out.texts = texts  # the captions themselves, for inspection
        return out

    def val_conditions(self, n: int) -> Conditions:
        """``n`` captions in the held-out wordings (:data:`HELD_OUT`, never trained on) with random
        attributes (:func:`evaluation_captions`, seed ``seed + 2``): ``text`` ``[n, 384]``, and what
        each caption asks for as labels ``shape``, ``color``, ``position`` ``[n]`` (``position``
        present only where the wording names it). A text→image model has only ``text``: sampling
        ignores the labels, which :meth:`score` reads."""
        from framework.core.encoders import resolve

        caps = evaluation_captions(HELD_OUT, seed=self.seed + 2, n=n)
        labels = {k: torch.tensor([c.requested.get(k, 0) for c in caps])
                  for k in ("shape", "color", "position")}
        present = {k: torch.ones(n, dtype=torch.bool) for k in ("text", "shape", "color")}
        present["position"] = torch.tensor(["position" in c.requested for c in caps])
        return Conditions({"text": resolve(TEXT_ENCODER)([c.text for c in caps]), **labels}, present)

    @torch.no_grad()
    def score(self, media: torch.Tensor, conditions: Conditions) -> dict[str, float]:
        """The image judge's scores of images ``[n, 3, S, S]`` asked for by :meth:`val_conditions`:
        ``acc_shape``, ``acc_color``, ``acc_shape_color`` (both), ``acc_position`` (over the
        captions that name a position), ``fd`` and ``diversity``."""
        judge = self.judge()
        out = judge.evaluate(media, {k: conditions.values[k] for k in ("shape", "color")})
        out["acc_shape_color"] = out.pop("acc_all")
        asked = conditions.present["position"].cpu()
        if bool(asked.any()):
            logits = judge.classifier(media.float().cpu().clamp(0, 1)[asked])
            right = logits["position"].argmax(-1) == conditions.values["position"].cpu()[asked]
            out["acc_position"] = float(right.float().mean())
        return out

    def judge(self):
        """The :class:`~modalities.image.metrics.ImageJudge` of :meth:`score` (the shapes
        classifier at this size), built once."""
        if self._judge is None:
            from .judges import shapes_or_digits_judge

            shipped = recipes_dir("image") / "checkpoints"
            folder = self.judge_dir or (shipped if shipped.is_dir()
                                        else Path.home() / ".cache" / "polyguide" / "image")
            self._judge = shapes_or_digits_judge(shapes_specs(), self.size, folder)
        return self._judge


def evaluation_captions(templates: tuple[str, ...] = HELD_OUT, seed: int = 0, n: int = 32) -> list[Caption]:
    """``n`` captions in the given wordings with random attributes, each with what it asks for
    (the shape and colour always; the position when the wording names it)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        t = templates[i % len(templates)]
        s, c, p, z = (int(torch.randint(k, (1,), generator=g)) for k in
                      (len(SHAPES), len(COLORS), len(POSITIONS), len(SIZES)))
        req = {"shape": s, "color": c}
        if "position" in attributes_named(t):
            req["position"] = p
        out.append(Caption(write(t, s, c, p, z), req))
    return out
