"""HumanML3D-style features: exact round trip, facing, contacts, the codec's normalisation."""

import math

import numpy as np
import torch

from modalities.motion.actions import generate_clip
from modalities.motion.codecs import Features
from modalities.motion.features import DIM, facing, features_to_positions, positions_to_features
from modalities.motion.skeleton import forward_kinematics, rest_positions, rot_y


def _clips(n=6, seed=0):
    return torch.stack([generate_clip(np.random.default_rng(seed + i)).positions for i in range(n)])


def test_round_trip_is_exact():
    pos = _clips()
    feats = positions_to_features(pos)
    assert feats.shape == (6, 64, DIM)
    assert torch.allclose(features_to_positions(feats), pos, atol=1e-4)


def test_facing_and_root_velocity_by_hand():
    # a rest pose turned to face +x, moving 5 cm per frame along +x: forward velocity 0.05, no side
    T = 4
    local = torch.eye(3).repeat(T, 22, 1, 1)
    local[:, 0] = rot_y(torch.tensor(math.pi / 2))
    root = torch.stack([torch.arange(T) * 0.05, torch.full((T,), 0.94), torch.zeros(T)], -1)
    pos = forward_kinematics(local, root)[0][None]
    assert torch.allclose(facing(pos), torch.full((1, T), math.pi / 2), atol=1e-5)
    f = positions_to_features(pos)[0]
    assert math.isclose(float(f[0, 0]), math.pi / 2, abs_tol=1e-5)  # frame 0: absolute facing
    assert torch.allclose(f[1:, 0], torch.zeros(T - 1), atol=1e-5)
    assert torch.allclose(f[1:, 1:3], torch.tensor([0.0, 0.05]).expand(T - 1, 2), atol=1e-5)
    assert torch.allclose(f[:, 3], torch.full((T,), 0.94))
    # root-relative joints in the facing frame equal the rest pose's
    rest = rest_positions()
    rel = (rest[1:] - rest[0] * torch.tensor([1.0, 0, 1.0]))
    assert torch.allclose(f[0, 4:67].reshape(21, 3), rel, atol=1e-5)


def test_contacts_of_a_still_pose():
    pos = rest_positions().expand(1, 5, 22, 3).clone()
    c = positions_to_features(pos)[0, :, -4:]
    assert torch.equal(c, torch.ones(5, 4))  # ankles at 6 cm, toes at 0, still
    pos[0, :, 10, 2] += 0.1 * torch.arange(5)  # the left toe slides 10 cm per frame on the floor
    c = positions_to_features(pos)[0, :, -4:]
    assert torch.equal(c[1:4, 1], torch.zeros(3)) and torch.equal(c[:, 3], torch.ones(5))


def test_codec_normalises_and_round_trips():
    codec = Features(frames=64, frames_per_token=2)
    pos = _clips(8, seed=50)
    x = codec.encode(pos)
    assert x.shape == (8, 32, 2 * DIM) == (8, *codec.shape)
    assert torch.allclose(codec.decode(x), pos, atol=1e-4)
    flat = x.reshape(-1, DIM)[:, :-4]
    varying = flat.std(0) > 0.05
    assert flat.mean(0).abs().max() < 1.5 and flat[:, varying].std(0).median() > 0.3
    assert torch.allclose(codec.root_path(x), pos[:, :, 0, [0, 2]], atol=1e-4)
