"""Metrics for generated images, judged by a small classifier trained on real data.

* **accuracy** per requested condition, and ``acc_all`` (every requested attribute right);
* **Fréchet distance** between the classifier's penultimate features of generated and real
  images (an FID whose feature network was trained on this data rather than ImageNet);
* **diversity**: mean pairwise feature distance among samples of the same request, relative to
  the same quantity on real images (1 ≈ as varied as real data, 0 = identical samples).

The classifier is trained once (seconds on CPU) and cached as a file; the cache is written
atomically so an interrupted run never leaves a torn file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from framework.core.atomic import atomic_write
from framework.core.checkpoints import CheckpointError, read_checkpoint

__all__ = ["AttributeClassifier", "ImageJudge", "frechet_distance"]


class AttributeClassifier(nn.Module):
    """A small CNN with one head per attribute: ``[B, C, S, S]`` → ``{name: [B, n_labels]}``."""

    def __init__(self, channels: int, heads: Mapping[str, int], width: int = 32, features: int = 64) -> None:
        super().__init__()
        self.heads_spec = dict(heads)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width * 2, width * 2, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(width * 32, features), nn.GELU())
        self.heads = nn.ModuleDict({k: nn.Linear(features, n) for k, n in heads.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, features]`` of images in ``[0, 1]``."""
        return self.body(images * 2 - 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(images)
        return {k: head(h) for k, head in self.heads.items()}


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


def _group_spread(feats: torch.Tensor, groups: torch.Tensor) -> float:
    """Mean pairwise distance among rows of the same group (groups with ≥ 2 rows)."""
    spreads = []
    for g in groups.unique():
        f = feats[groups == g]
        if len(f) >= 2:
            d = torch.cdist(f, f)
            spreads.append(float(d.sum() / (len(f) * (len(f) - 1))))
    return float(np.mean(spreads)) if spreads else float("nan")


class ImageJudge:
    """Scores generated images against real ones with a cached :class:`AttributeClassifier`.

    Args:
        real: real images ``[N, C, S, S]`` in ``[0, 1]`` (the training split) and their labels.
        held_out: a held-out real split (images, labels) for the classifier's accuracy and the
            real-feature statistics.
        cache: the classifier file; trained and written there if missing.
    """

    def __init__(self, real: tuple[torch.Tensor, Mapping[str, torch.Tensor]],
                 held_out: tuple[torch.Tensor, Mapping[str, torch.Tensor]],
                 labels: Mapping[str, int], cache: Path | str, epochs: int = 4, seed: int = 0) -> None:
        self.labels = dict(labels)
        cache = Path(cache)
        channels = real[0].shape[1]
        self.classifier = AttributeClassifier(channels, self.labels)
        if cache.exists():
            self._load(cache)
        else:
            self._train(real, epochs, seed)
            atomic_write(cache, lambda tmp: torch.save(self.classifier.state_dict(), tmp))
        self.classifier.eval()
        images, targets = held_out
        with torch.no_grad():
            self.real_features = self.classifier.features(images)
            logits = self.classifier(images)
        self.real_accuracy = {k: float((logits[k].argmax(-1) == targets[k]).float().mean())
                              for k in self.labels}
        self._real_keys = {k: targets[k] for k in self.labels}

    def _load(self, cache: Path) -> None:
        """Weights from ``cache``, read with ``weights_only=True``; a bad or foreign file is a
        :class:`~framework.core.checkpoints.CheckpointError` naming it."""
        state = read_checkpoint(cache)
        try:
            self.classifier.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as e:
            detail = " ".join(str(e).split())[:200]
            raise CheckpointError(f"judge cache {cache}: does not hold this judge's classifier "
                                  f"({detail})") from e

    def _train(self, real: tuple[torch.Tensor, Mapping[str, torch.Tensor]], epochs: int, seed: int) -> None:
        images, targets = real
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        opt = torch.optim.AdamW(self.classifier.parameters(), lr=2e-3)
        for _ in range(epochs):
            for idx in torch.randperm(len(images), generator=g).split(128):
                x = images[idx]
                x = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)  # robust to sampler noise
                out = self.classifier(x)
                loss = sum(nn.functional.cross_entropy(out[k], targets[k][idx]) for k in self.labels)
                opt.zero_grad()
                loss.backward()
                opt.step()

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, requested: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of generated ``images`` ``[N, C, S, S]`` for per-sample ``requested`` labels.

        Only the attributes in ``requested`` (each ``[N]`` long) count towards ``acc_all``.
        """
        unknown = set(requested) - set(self.labels)
        if unknown:
            raise ValueError(f"the judge knows attributes {sorted(self.labels)}, not {sorted(unknown)}")
        images = images.float().cpu().clamp(0, 1)
        logits = self.classifier(images)
        feats = self.classifier.features(images)
        out: dict[str, float] = {}
        all_right = torch.ones(len(images), dtype=torch.bool)
        for k, want in requested.items():
            right = logits[k].argmax(-1) == want.cpu()
            out[f"acc_{k}"] = float(right.float().mean())
            all_right &= right
        out["acc_all"] = float(all_right.float().mean())
        out["fd"] = frechet_distance(feats, self.real_features)
        groups = _group_ids(requested, len(images))
        real_groups = _group_ids({k: self._real_keys[k] for k in requested}, len(self.real_features))
        out["diversity"] = _group_spread(feats, groups) / _group_spread(self.real_features, real_groups)
        return out


def _group_ids(labels: Mapping[str, torch.Tensor], n: int) -> torch.Tensor:
    """One id per distinct combination of the given labels ``[n]``."""
    if not labels:
        return torch.zeros(n, dtype=torch.long)
    keys = torch.stack([v.cpu().long() for v in labels.values()], 1)
    return torch.unique(keys, dim=0, return_inverse=True)[1]
