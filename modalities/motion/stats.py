"""The shipped normalisation statistics of the motion features."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["STATS", "feature_stats"]

STATS = Path(__file__).resolve().parent / "feature_stats.npz"


@cache
def feature_stats(path: str = str(STATS)) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped normalisation ``(mean, std)``, each ``[71]``."""
    with np.load(path, allow_pickle=False) as z:
        return torch.from_numpy(z["mean"]), torch.from_numpy(z["std"])
