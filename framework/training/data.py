"""A Lightning data module base for deterministic, in-memory train/val splits."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from framework.training.resume import EpochBatches, ResumableLoader

__all__ = ["SplitData"]


class SplitData(L.LightningDataModule):
    """Builds its two splits once (:meth:`build`) and serves them; training order is seeded.

    The training order is :class:`~framework.training.resume.EpochBatches` (a shuffle per epoch from
    ``(seed, epoch)``; with several processes each takes its slice of every global batch), whose
    position is saved in checkpoints, so a run resumed from any checkpoint sees the same batches as an
    uninterrupted one. The loaders draw nothing from the
    global random generators (each has its own), which belong to training.

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
        # with several processes Lightning re-creates EpochBatches with its DistributedSampler: each
        # process then takes its slice of every global batch (batch_size per process)
        batches = EpochBatches(len(self._train), self.batch_size, self.seed)
        return ResumableLoader(self._train, batch_sampler=batches,
                               generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self._val, batch_size=self.batch_size,
                          generator=torch.Generator().manual_seed(self.seed))
