"""Image data modules: procedural shapes and sklearn's handwritten digits.

Batches are ``{"media": [B, C, S, S] in [0, 1], "conditions": {name: [B] or [B, dim]}}``; the
model's codec turns media into its representation. Splits are deterministic (fixed seeds).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from framework.core.conditions import ConditionSpec
from framework.training.data import SplitData

from .shapes import COLORS, POSITIONS, SHAPES, caption, render

__all__ = ["DigitsData", "ShapesData", "shapes_specs"]

TEXT_ENCODER = "minilm"


def shapes_specs(text: bool = False) -> dict[str, ConditionSpec]:
    """The condition specs of the shapes data (``text``: the caption's MiniLM embedding)."""
    specs = {"shape": ConditionSpec("shape", labels=SHAPES), "color": ConditionSpec("color", labels=COLORS),
             "position": ConditionSpec("position", labels=POSITIONS)}
    if text:
        specs["text"] = ConditionSpec("text", kind="vector", dim=384, encoder=TEXT_ENCODER)
    return specs


class _Tensors(Dataset):
    def __init__(self, media: torch.Tensor, conditions: dict[str, torch.Tensor]) -> None:
        self.media, self.conditions = media, conditions

    def __len__(self) -> int:
        return self.media.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"media": self.media[i], "conditions": {k: v[i] for k, v in self.conditions.items()}}


class _ImageData(SplitData):
    def split(self, name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A whole split (``"train"`` or ``"val"``): media ``[N, C, S, S]`` and condition values."""
        self.setup()
        data = {"train": self._train, "val": self._val}[name]
        return data.media, data.conditions


class ShapesData(_ImageData):
    """Procedural shapes (:mod:`modalities.image.shapes`) with conditions ``shape``, ``color``,
    ``position`` and optionally ``text`` (the caption embedded by MiniLM).

    Args:
        size: image side (16 or 32).
        n_train, n_val: split sizes (generated with seeds ``seed`` and ``seed + 1``).
        batch_size: training batch size.
        text: add the ``text`` condition (loads the offline MiniLM encoder once; captions cached).
    """

    def __init__(self, size: int = 16, n_train: int = 20_000, n_val: int = 1_000, batch_size: int = 64,
                 text: bool = False, seed: int = 0) -> None:
        super().__init__(batch_size, seed)
        if size not in (16, 32):
            raise ValueError(f"shapes are rendered at 16 or 32 pixels, got size={size}")
        self.size, self.n_train, self.n_val, self.text = size, n_train, n_val, text
        self.specs = shapes_specs(text)

    def _split(self, n: int, seed: int) -> _Tensors:
        b = render(n, self.size, torch.Generator().manual_seed(seed))
        conds = {"shape": b.shape, "color": b.color, "position": b.position}
        if self.text:
            from framework.core.encoders import resolve

            conds["text"] = resolve(TEXT_ENCODER)(b.captions())
        return _Tensors(b.images, conds)

    def build(self) -> tuple[_Tensors, _Tensors]:
        return self._split(self.n_train, self.seed), self._split(self.n_val, self.seed + 1)

    @staticmethod
    def caption(shape: int, color: int, position: int, size: int = 1) -> str:
        return caption(shape, color, position, size)


class DigitsData(_ImageData):
    """sklearn's 1,797 handwritten digits (8×8, 17 grey levels), upsampled to ``size``; condition
    ``digit``. Split: a fixed random 10% for validation.

    Args:
        size: image side (8 = native, 16 = nearest-neighbour ×2).
        batch_size: training batch size.
    """

    def __init__(self, size: int = 16, batch_size: int = 64, val_fraction: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__(batch_size, seed)
        if size not in (8, 16):
            raise ValueError(f"digits are 8×8; size must be 8 or 16, got {size}")
        self.size, self.val_fraction = size, val_fraction
        self.specs = {"digit": ConditionSpec("digit", labels=tuple(str(i) for i in range(10)))}

    def build(self) -> tuple[_Tensors, _Tensors]:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = torch.from_numpy(d.images).float()[:, None] / 16.0  # [N, 1, 8, 8] in [0, 1]
        if self.size == 16:
            images = F.interpolate(images, scale_factor=2, mode="nearest")
        labels = torch.from_numpy(d.target).long()
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
        n_val = int(len(labels) * self.val_fraction)
        val, train = perm[:n_val], perm[n_val:]
        return (_Tensors(images[train], {"digit": labels[train]}),
                _Tensors(images[val], {"digit": labels[val]}))


