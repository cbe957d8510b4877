"""Metrics for generated images, judged by a small classifier trained on real data.

* **accuracy** per requested condition, and ``acc_all`` (every requested attribute right);
* **Fréchet distance** between the classifier's penultimate features of generated and real
  images (an FID whose feature network was trained on this data rather than ImageNet);
* **diversity**: mean pairwise feature distance among samples of the same request, relative to
  the same quantity on real images (1 ≈ as varied as real data, 0 = identical samples);
* with ``failures`` (shapes): **valid**, the share of samples a second small CNN accepts as one
  clean shape. It is trained on real renders against failure modes rendered procedurally
  (:mod:`modalities.image.failures`: noise, blobs, several objects, cut off, holes, ragged,
  stretched, smeared, blurred, empty, fragments), never on model outputs. Accuracies then count
  only the valid samples (the share of *valid* samples whose attributes are right);
* with ``rules`` (shapes): the rule-based check of :mod:`modalities.image.rules` (connected
  components, aspect ratio, holes, colour, outline; no network) side by side: ``rule_valid`` and
  ``rule_acc_all``, its reading of shape and colour on the samples it finds valid.

The classifier is trained once (seconds on CPU) and cached as a file; the cache is written
atomically so an interrupted run never leaves a torn file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from framework.core.atomic import atomic_write
from framework.evaluation.metrics import frechet_distance
from framework.evaluation.metrics import group_ids as _group_ids
from framework.evaluation.metrics import group_spread as _group_spread
from framework.model.checkpoints import CheckpointError, read_checkpoint

__all__ = ["AttributeClassifier", "ImageJudge", "frechet_distance"]

REJECT_EPOCHS = 6  # the reject class: passes over real renders + as many rendered failures


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


class ImageJudge:
    """Scores generated images against real ones with a cached :class:`AttributeClassifier`.

    Args:
        real: real images ``[N, C, S, S]`` in ``[0, 1]`` (the training split) and their labels.
        held_out: a held-out real split (images, labels) for the classifier's accuracy and the
            real-feature statistics.
        cache: the classifier file; trained and written there if missing.
        failures: ``failures(n, seed)`` renders ``n`` images ``[n, C, S, S]`` that are not a clean
            shape (seed 0 for training, 1 held out); given, the judge has a reject class, cached
            as ``reject-<cache name>`` and trained (if missing, :data:`REJECT_EPOCHS` passes) on the
            real training split against ``failures(N, 0)``.
        rules: also run the rule-based check (:mod:`modalities.image.rules`, RGB shapes only).
    """

    def __init__(self, real: tuple[torch.Tensor, Mapping[str, torch.Tensor]],
                 held_out: tuple[torch.Tensor, Mapping[str, torch.Tensor]],
                 labels: Mapping[str, int], cache: Path | str, epochs: int = 4, seed: int = 0, *,
                 failures: Callable[[int, int], torch.Tensor] | None = None, rules: bool = False) -> None:
        self.labels = dict(labels)
        cache = Path(cache)
        channels = real[0].shape[1]
        self.classifier = AttributeClassifier(channels, self.labels)
        if cache.exists():
            _load(self.classifier, cache)
        else:
            self._train(real, epochs, seed)
            atomic_write(cache, lambda tmp: torch.save(self.classifier.state_dict(), tmp))
        self.classifier.eval()
        self.rules = rules
        self.reject: AttributeClassifier | None = None
        if failures is not None:
            self.reject = AttributeClassifier(channels, {"clean": 2})
            reject_cache = cache.with_name(f"reject-{cache.name}")
            if reject_cache.exists():
                _load(self.reject, reject_cache)
            else:
                _train_reject(self.reject, real[0], failures(len(real[0]), 0), REJECT_EPOCHS, seed)
                atomic_write(reject_cache, lambda tmp: torch.save(self.reject.state_dict(), tmp))
            self.reject.eval()
            with torch.no_grad():
                #: the share of held-out real images accepted and of held-out failures refused
                self.real_valid = float(self.accepts(held_out[0]).float().mean())
                self.failures_refused = float((~self.accepts(failures(len(held_out[0]), 1))).float().mean())
        images, targets = held_out
        with torch.no_grad():
            self.real_features = self.classifier.features(images)
            logits = self.classifier(images)
        self.real_accuracy = {k: float((logits[k].argmax(-1) == targets[k]).float().mean())
                              for k in self.labels}
        self._real_keys = {k: targets[k] for k in self.labels}

    @torch.no_grad()
    def accepts(self, images: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool: the reject classifier reads one clean shape in each image ``[N, C, S, S]``
        (all true when the judge has no reject class)."""
        if self.reject is None:
            return torch.ones(len(images), dtype=torch.bool)
        return self.reject(images.float().cpu().clamp(0, 1))["clean"].argmax(-1) == 1

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
        valid = self.accepts(images)
        if self.reject is not None:
            out["valid"] = float(valid.float().mean())
        all_right = torch.ones(len(images), dtype=torch.bool)
        for k, want in requested.items():
            right = logits[k].argmax(-1) == want.cpu()
            out[f"acc_{k}"] = _share(right, valid)
            all_right &= right
        out["acc_all"] = _share(all_right, valid)
        if self.rules:
            from .rules import read_batch

            rule_valid, shape, color = read_batch(images)
            out["rule_valid"] = float(rule_valid.float().mean())
            right = torch.ones(len(images), dtype=torch.bool)
            for k, read in (("shape", shape), ("color", color)):
                if k in requested:
                    right &= read == requested[k].cpu()
            out["rule_acc_all"] = _share(right, rule_valid)
        out["fd"] = frechet_distance(feats, self.real_features)
        groups = _group_ids(requested, len(images))
        real_groups = _group_ids({k: self._real_keys[k] for k in requested}, len(self.real_features))
        out["diversity"] = _group_spread(feats, groups) / _group_spread(self.real_features, real_groups)
        return out


def _share(right: torch.Tensor, valid: torch.Tensor) -> float:
    """The share of ``valid`` samples that are ``right`` (both ``[N]`` bool); 0 with no valid sample."""
    return float(right[valid].float().mean()) if bool(valid.any()) else 0.0


def _load(classifier: nn.Module, cache: Path) -> None:
    """Weights from ``cache``, read with ``weights_only=True``; a bad or foreign file is a
    :class:`~framework.model.checkpoints.CheckpointError` naming it."""
    state = read_checkpoint(cache)
    try:
        classifier.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(f"judge cache {cache}: does not hold this judge's classifier "
                              f"({detail})") from e


def _train_reject(reject: AttributeClassifier, real: torch.Tensor, failures: torch.Tensor, epochs: int,
                  seed: int) -> None:
    """Train ``reject``'s ``clean`` head: real images ``[N, C, S, S]`` are class 1, rendered
    failures ``[M, C, S, S]`` class 0; each batch adds Gaussian noise of a random strength up to
    0.05 (samplers leave some) to both."""
    g = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed + 1)
    images = torch.cat([real, failures])
    target = torch.cat([torch.ones(len(real)), torch.zeros(len(failures))]).long()
    opt = torch.optim.AdamW(reject.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(128):
            x = images[idx]
            strength = 0.05 * torch.rand(len(x), 1, 1, 1, generator=g)
            x = (x + strength * torch.randn(x.shape, generator=g)).clamp(0, 1)
            loss = nn.functional.cross_entropy(reject(x)["clean"], target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
