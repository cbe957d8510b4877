"""Differentiable image costs for cost-gradient guidance (``presets.cost``).

``attribute_cost(codec, specs, attribute)`` builds ``cost(x0, conditions) = −log p(attribute =
requested | decode(x̂0))`` per sample, from a small classifier on *clean* images (the image
modality's :class:`~modalities.image.metrics.AttributeClassifier`): classifier guidance on the
clean estimate, as training-free guidance does (TFG, universal guidance). Samples whose
condition is absent cost 0. The image modality registers one cost per attribute it can judge —
``shape``, ``color``, ``position`` (shapes models) and ``digit`` (digits models):

    polyguide sample --checkpoint recipes/image/checkpoints/shapes_flow.ckpt \\
        --cond shape=circle --cond color=red --guidance "cond(shape) + cost(color, 0.05)"

The classifier is **not** the judge's: it is trained from another seed on other renders (shapes)
and cached as ``cost-classifier-<data><size>.pt`` next to the judge's, so guided samples are not
graded by the network that steered them. (Same architecture, so the two may still share blind spots.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from framework.core.conditions import Conditions, ConditionSpec
from framework.core.plugins import Codec, PluginError
from framework.core.shipped import recipes_dir

from .metrics import AttributeClassifier, ImageJudge

__all__ = ["COSTS", "AttributeCost", "attribute_cost", "cost_classifier"]

CACHE = recipes_dir("image") / "checkpoints"
_CLASSIFIERS: dict[Path, AttributeClassifier] = {}  # one per file, shared by every cost and model


def cost_classifier(specs: Mapping[str, ConditionSpec], codec: Codec, cache_dir: Path = CACHE
                    ) -> AttributeClassifier:
    """The guidance classifier for a model's data, trained once (seconds) and cached.

    Its data and seed differ from the judge's (:meth:`ImageModality.judge`); frozen, eval mode.
    """
    from .judges import judge_data, judge_heads

    heads, name = judge_heads(specs, codec.size)
    path = Path(cache_dir) / f"cost-classifier-{name}.pt"
    if not path.exists() and not os.access(cache_dir, os.W_OK):
        path = Path(tempfile.gettempdir()) / path.name  # an installed, read-only package: cache elsewhere
    if path not in _CLASSIFIERS:
        if path.exists():
            clf = AttributeClassifier(codec.channels, heads)
            clf.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        else:
            real, held, heads, _ = judge_data(specs, codec.size, seed_offset=2000)
            clf = ImageJudge(real, held, heads, path, seed=1).classifier
        _CLASSIFIERS[path] = clf.eval().requires_grad_(False)
    return _CLASSIFIERS[path]


class AttributeCost:
    """``−log p_clf(attribute = requested | decode(x0))`` per sample, ``[B]``; 0 where the
    condition is absent.

    Args:
        codec: the model's continuous codec (``decode`` maps ``[B, L, D]`` to images in ``[0, 1]``;
            its clamp passes no gradient to pixels outside that range).
        classifier: a frozen :class:`AttributeClassifier` with a head for ``attribute``.
        attribute: the condition whose requested label the cost rewards.
    """

    def __init__(self, codec: Codec, classifier: AttributeClassifier, attribute: str) -> None:
        self.codec, self.classifier, self.attribute = codec, classifier, attribute

    def __call__(self, x0: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        if self.attribute not in conditions.values:
            raise ValueError(f"the {self.attribute!r} cost needs the requested {self.attribute!r} in the "
                             f"sampling conditions; they have {sorted(conditions.values)}")
        clf = self.classifier.to(x0.device)
        images = self.codec.decode(x0).float()
        logits = clf(images)[self.attribute]
        want = conditions.values[self.attribute].long().to(x0.device)
        present = conditions.present[self.attribute].to(x0.device)
        nll = F.cross_entropy(logits, want.clamp(min=0), reduction="none")
        return (nll * present).to(x0.dtype)


def attribute_cost(codec: Codec, specs: Mapping[str, ConditionSpec], attribute: str) -> AttributeCost:
    """The factory the plugin registers (``Modality.costs``): checks the model can use it."""
    if getattr(codec, "vocab_size", None) is not None or not hasattr(codec, "size"):
        raise PluginError(f"the image cost {attribute!r} needs a continuous image codec (patches)")
    spec = specs.get(attribute)
    if spec is None or spec.kind != "categorical":
        raise PluginError(f"the image cost {attribute!r} reads the requested {attribute!r} label, but this "
                          f"model has no categorical condition {attribute!r} (it has {sorted(specs)})")
    clf = cost_classifier(specs, codec)
    if attribute not in clf.heads_spec:
        raise PluginError(f"the image cost classifier judges {sorted(clf.heads_spec)}, not {attribute!r}")
    return AttributeCost(codec, clf, attribute)


COSTS = {name: partial(attribute_cost, attribute=name) for name in ("shape", "color", "position", "digit")}
