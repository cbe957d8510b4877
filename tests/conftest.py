"""Shared fixtures. Tests never touch the network: the hub is forced offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from framework.toy import GaussianMixtureToy


def constant_alpha_sigma(alpha: float = 0.6, sigma: float = 0.8):
    """``t ↦ (α, σ)`` independent of t: a fixed point on a VP path (α² + σ² = 1)."""
    return lambda t: (torch.full(t.shape, alpha, dtype=torch.float64),
                      torch.full(t.shape, sigma, dtype=torch.float64))


@pytest.fixture
def toy() -> GaussianMixtureToy:
    return GaussianMixtureToy(constant_alpha_sigma())
