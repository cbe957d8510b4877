"""Rotation features: exact inverse on real clips, and any output decodes to the skeleton's bones."""

import numpy as np
import torch

from framework.core import plugins
from modalities.motion.actions import generate_clip
from modalities.motion.codecs import Rotations
from modalities.motion.physics import physics
from modalities.motion.rotations import DIM, positions_to_rotation_features, rotation_features_to_positions


def test_round_trip_is_exact_on_real_clips():
    rng = np.random.default_rng(1)
    pos = torch.stack([generate_clip(rng).positions for _ in range(3)])
    feats = positions_to_rotation_features(pos)
    assert feats.shape == (3, 64, DIM) == (3, 64, 110)
    assert torch.allclose(rotation_features_to_positions(feats), pos, atol=1e-5)
    codec = plugins.get("motion").codec("rotations", frames_per_token=4)
    x = codec.encode(pos)
    assert x.shape == (3, 16, 440) and torch.allclose(codec.decode(x), pos, atol=1e-5)


def test_any_output_has_the_skeletons_bone_lengths_and_a_differentiable_path():
    codec = Rotations(frames=64, frames_per_token=4)
    x = torch.randn(2, 16, 440, requires_grad=True)  # what an untrained network might output
    p = physics(codec.decode(x).detach())
    assert p["bone_cv"] < 1e-5 and p["bone_error"] < 1e-5  # positions: bone CV of 0.48 for such noise
    codec.root_path(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
