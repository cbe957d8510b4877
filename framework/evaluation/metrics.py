"""Metrics every modality's judge shares: the Fréchet distance between feature sets, and the
diversity of samples within groups of the same request."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["frechet_distance", "group_ids", "group_spread"]


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``[N, F]`` and ``[M, F]``:
    ``|μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½)``.

    ``tr((Σ₁Σ₂)^½)`` is the sum of the square roots of the eigenvalues of ``Σ₁Σ₂`` (real and ≥ 0
    for covariance matrices), which stays stable when the covariances are singular (few samples).
    """
    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_trace = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(min=0)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * root_trace)


def group_spread(feats: torch.Tensor, groups: torch.Tensor) -> float:
    """Mean pairwise distance among rows of ``feats`` ``[N, F]`` of the same group (``groups``
    ``[N]`` ids; groups with ≥ 2 rows); NaN when no group has two rows."""
    spreads = []
    for g in groups.unique():
        f = feats[groups == g]
        if len(f) >= 2:
            d = torch.cdist(f, f)
            spreads.append(float(d.sum() / (len(f) * (len(f) - 1))))
    return float(np.mean(spreads)) if spreads else float("nan")


def group_ids(labels: Mapping[str, torch.Tensor], n: int) -> torch.Tensor:
    """One id per distinct combination of the given labels (each ``[n]``) → ``[n]`` long."""
    if not labels:
        return torch.zeros(n, dtype=torch.long)
    keys = torch.stack([v.cpu().long() for v in labels.values()], 1)
    return torch.unique(keys, dim=0, return_inverse=True)[1]
