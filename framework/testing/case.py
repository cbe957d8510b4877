"""What a plugin's contract tests run on: one small configuration of the plugin (:class:`PluginCase`).

A case names the modality, one representation with its codec arguments, the condition specs of a
model, and how to build a *small* data module (a few dozen samples: the contract tests draw one
batch). :meth:`PluginCase.from_recipe` reads all of it from a recipe, so a plugin usually writes::

    case = PluginCase.from_recipe(Path(__file__).parents[1] / "polyguide_mine/recipes/mine_flow.yaml",
                                  data_args={"n_train": 32, "n_val": 16, "batch_size": 8})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PluginCase", "import_class"]


def import_class(path: str) -> Any:
    """``"package.module.Class"`` (a recipe's ``class_path``) or ``"package.module:Class"`` → the class."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ValueError(f"{path!r} is not an import path such as 'package.module.Class'")
    return getattr(importlib.import_module(module), attr)


@dataclass
class PluginCase:
    """One small configuration of a modality plugin, for :mod:`framework.testing.contract`.

    Attributes:
        modality: the registered name (the entry point's name).
        representation: ``{"name": <representation>, **codec arguments}``, as in a recipe.
        conditions: condition specs as dicts, as in a recipe's ``model.conditions``.
        data: a zero-argument callable returning a small ``LightningDataModule`` whose training
            batches are ``{"media": [B, *media_shape], "conditions": {...}}``.
        family: the generator family of the tiny model trained one step; ``None``: ``flow`` for a
            continuous codec, ``masked`` for a token codec.
        family_args: the family's arguments (e.g. ``{"prediction": "x0"}``).
        judge: whether the modality has a judge to check (``Modality.judge`` + ``evaluate``).
        cache_dir: where the judge may cache itself (``None``: the folder validation uses,
            :func:`framework.core.plugins.judge_cache`).
        roundtrip_atol: if given, ``decode(encode(media))`` must equal the media within it (a
            lossless codec); ``None`` checks shapes, types and determinism only (lossy codecs).
        ragged_media: media whose last dimension varies from batch to batch (text as NUL-padded
            bytes ``[B, M]``, ``M`` the longest passage); decoded and sampled media must then
            match the data's media in every dimension but the last.
        sample_conditions: the conditions the sampling check requests, as raw values for
            ``model.sample``; ``None``: the first two samples' conditions from the data batch.
    """

    modality: str
    representation: Mapping[str, Any]
    conditions: Sequence[Mapping[str, Any]]
    data: Callable[[], Any]
    family: str | None = None
    family_args: Mapping[str, Any] = field(default_factory=dict)
    judge: bool = True
    cache_dir: Path | None = None
    roundtrip_atol: float | None = None
    ragged_media: bool = False
    sample_conditions: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if "name" not in self.representation:
            raise ValueError(f"representation {dict(self.representation)!r} has no 'name'")

    @property
    def codec_args(self) -> dict[str, Any]:
        """The codec's arguments: the representation without its ``name``."""
        return {k: v for k, v in self.representation.items() if k != "name"}

    @classmethod
    def from_recipe(cls, recipe: str | Path, *, data_args: Mapping[str, Any] | None = None,
                    **overrides: Any) -> PluginCase:
        """A case from a recipe's ``model`` (modality, representation, conditions, family,
        family_args) and ``data`` (``class_path`` with ``init_args``, updated by ``data_args`` to
        make it small); ``overrides`` set any other attribute."""
        import yaml

        config = yaml.safe_load(Path(recipe).read_text())
        model, data = config.get("model") or {}, config.get("data") or {}
        if "modality" not in model or "class_path" not in data:
            raise ValueError(f"{recipe}: a plugin recipe names model.modality and data.class_path")
        init = {**(data.get("init_args") or {}), **dict(data_args or {})}
        data_cls = data["class_path"]

        def build() -> Any:
            return import_class(data_cls)(**init)

        fields = dict(modality=model["modality"], representation=model["representation"],
                      conditions=model.get("conditions") or [], data=build, family=model.get("family"),
                      family_args=model.get("family_args") or {})
        return cls(**{**fields, **overrides})
