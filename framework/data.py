"""A Lightning data module base for deterministic, in-memory train/val splits."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["SplitData"]


class SplitData(L.LightningDataModule):
    """Builds its two splits once (:meth:`build`) and serves them; training order is seeded.

    Subclasses implement :meth:`build` returning ``(train, val)`` datasets whose items are batch
    dicts (``{"x" or "media": ..., "conditions": {...}}``).
    """

    def __init__(self, batch_size: int, seed: int) -> None:
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self._train: Dataset | None = None
        self._val: Dataset | None = None

    def build(self) -> tuple[Dataset, Dataset]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            self._train, self._val = self.build()

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self._train, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self._val, batch_size=self.batch_size)
