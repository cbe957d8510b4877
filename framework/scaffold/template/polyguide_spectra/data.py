"""The data module (imports Lightning: the plugin names it in ``LazyClasses``, so sampling never loads it)."""

from __future__ import annotations

from framework.training.data import SplitData

from .signals import make_signals

__all__ = ["SpectraData"]


class SpectraData(SplitData):
    """Procedural signals; batches are ``{"media": [B, 1, length], "conditions": {"peak": [B] label ids,
    "level": [B] floats}}``.

    ``SplitData`` serves the two splits :meth:`build` returns, in a training order saved in
    checkpoints, so a resumed run sees exactly the batches an uninterrupted one would.

    Args:
        length: samples per signal (the codec's ``length``).
        n_train, n_val: split sizes, generated with seeds ``seed`` and ``seed + 1``.
        batch_size: batch size.
        seed: the data and the training order.
    """

    def __init__(self, length: int = 32, n_train: int = 4096, n_val: int = 256, batch_size: int = 64,
                 seed: int = 0) -> None:
        super().__init__(batch_size, seed)
        self.length, self.n_train, self.n_val = length, n_train, n_val

    def _split(self, n: int, seed: int) -> list[dict]:
        media, peak, level = make_signals(n, self.length, seed)
        return [{"media": m, "conditions": {"peak": p, "level": v}}
                for m, p, v in zip(media, peak, level, strict=True)]

    def build(self) -> tuple[list[dict], list[dict]]:
        return self._split(self.n_train, self.seed), self._split(self.n_val, self.seed + 1)
