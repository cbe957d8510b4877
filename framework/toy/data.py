"""Procedural two-condition data for the toy recipes of every family.

``kind="points"``: 2-D points from the Gaussian mixture of :class:`~framework.toy.model.GaussianMixtureToy`
(shape ``[1, 2]`` per sample: one continuous token). ``kind="tokens"``: sequences from
:class:`~framework.toy.model.CategoricalMixtureToy`. Conditions ``shape`` (4 labels) and ``color``
(3 labels). Samples are scored by the mixture's exact rule (nearest component / most frequent
tokens), so "conditional accuracy" needs no trained classifier.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from framework.core.conditions import Conditions
from framework.toy.model import CategoricalMixtureToy, GaussianMixtureToy, flow_alpha_sigma
from framework.training.data import SplitData

__all__ = ["MixtureData"]


class _Pairs(Dataset):
    def __init__(self, x: torch.Tensor, shape: torch.Tensor, color: torch.Tensor) -> None:
        self.x, self.shape, self.color = x, shape, color

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "conditions": {"shape": self.shape[i], "color": self.color[i]}}


class MixtureData(SplitData):
    """A deterministic train/val split of procedurally generated two-condition data.

    Args:
        kind: ``points`` (continuous) or ``tokens`` (discrete).
        n_train, n_val: number of samples.
        batch_size: training batch size.
        length: tokens per sequence (``tokens`` only).
        std: component std (``points``); purity: signature-token probability (``tokens``).
        seed: the data seed.
    """

    def __init__(self, kind: Literal["points", "tokens"] = "points", n_train: int = 20_000,
                 n_val: int = 1_000, batch_size: int = 256, length: int = 12, std: float = 0.35,
                 purity: float = 0.25, seed: int = 0) -> None:
        super().__init__(batch_size, seed)
        if kind not in ("points", "tokens"):
            raise ValueError(f"kind must be 'points' or 'tokens', got {kind!r}")
        self.kind, self.n_train, self.n_val, self.length = kind, n_train, n_val, length
        if kind == "points":
            self.toy: Any = GaussianMixtureToy(flow_alpha_sigma, std=std)
        else:
            self.toy = CategoricalMixtureToy(purity=purity)
        self.specs = self.toy.specs

    @property
    def vocab_size(self) -> int:
        return self.toy.vocab

    def _make(self, n: int, seed: int) -> _Pairs:
        g = torch.Generator().manual_seed(seed)
        shape = torch.randint(len(self.toy.shapes), (n,), generator=g)
        color = torch.randint(len(self.toy.colors), (n,), generator=g)
        if self.kind == "points":
            mean = self.toy.means[shape, color].float()
            x = (mean + self.toy.std * torch.randn(n, 2, generator=g))[:, None, :]  # [n, 1, 2]
        else:
            conds = Conditions({"shape": shape, "color": color})
            x = self.toy.sample_data(conds, self.length, g)
        return _Pairs(x, shape, color)

    def build(self) -> tuple[_Pairs, _Pairs]:
        return self._make(self.n_train, self.seed), self._make(self.n_val, self.seed + 1)

    def val_conditions(self, n: int, seed: int = 123) -> Conditions:
        """``n`` uniformly drawn (shape, color) requests (fixed seed)."""
        g = torch.Generator().manual_seed(seed)
        return Conditions({"shape": torch.randint(len(self.toy.shapes), (n,), generator=g),
                           "color": torch.randint(len(self.toy.colors), (n,), generator=g)})

    def score(self, samples: torch.Tensor, conditions: Conditions) -> dict[str, float]:
        """Accuracy of ``shape``, ``color`` and both, judged by the mixture's exact rule."""
        x = samples.reshape(samples.shape[0], -1) if self.kind == "points" else samples
        s, c = self.toy.classify(x.float() if self.kind == "points" else x)
        ok_s = s.cpu() == conditions.values["shape"].cpu()
        ok_c = c.cpu() == conditions.values["color"].cpu()
        return {"acc_shape": float(ok_s.float().mean()), "acc_color": float(ok_c.float().mean()),
                "acc_both": float((ok_s & ok_c).float().mean())}


def guidance_sweep(model: Any, data: MixtureData, guidances: dict[str, str], n: int = 400,
                   steps: int = 20, seed: int = 0) -> dict[str, dict[str, float]]:
    """Sample ``n`` requests per guidance and score them: label → accuracies, NFE per step, seconds."""
    conds = data.val_conditions(n)
    rows = {}
    for label, g in guidances.items():
        out = model.sample(conds, g, steps=steps, seed=seed)
        rows[label] = {**data.score(out.samples, conds), "nfe_per_step": out.nfe / len(out.stats),
                       "seconds": out.seconds}
    return rows
