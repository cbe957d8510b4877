"""Skeleton and forward kinematics against hand-computed positions."""

import math

import torch

from modalities.motion.skeleton import (
    JOINTS,
    OFFSETS,
    PARENTS,
    forward_kinematics,
    rest_positions,
    rot_x,
    rot_y,
    rotation_between,
)


def test_layout_is_smpl_order():
    assert len(JOINTS) == 22 and JOINTS[0] == "pelvis" and JOINTS[15] == "head"
    assert JOINTS[10] == "left_foot" and JOINTS[21] == "right_wrist"
    assert all(PARENTS[j] < j for j in range(1, 22))


def test_rest_pose_stands_on_the_floor():
    p = rest_positions()
    assert torch.allclose(p[10], torch.tensor([0.085, 0.0, 0.12]), atol=1e-6)  # left toe on the floor
    assert torch.allclose(p[7], torch.tensor([0.085, 0.06, 0.0]), atol=1e-6)  # left ankle
    wrist = [0.075 + 0.12 + 0.26 + 0.25, 0.94 + 0.11 + 0.13 + 0.06 + 0.12 + 0.045, 0.02 - 0.02 - 0.01 - 0.01]
    assert torch.allclose(p[20], torch.tensor(wrist), atol=1e-6)  # left wrist, T-pose


def test_fk_knee_bend_and_root_yaw_by_hand():
    local = torch.eye(3).repeat(22, 1, 1)
    local[4] = rot_x(torch.tensor(math.pi / 2))  # left knee bent 90°: the shin points backwards (−z)
    root = torch.tensor([1.0, 0.9, 2.0])
    p, _ = forward_kinematics(local, root)
    knee = root + torch.tensor([0.085, -0.08 - 0.39, 0.0])
    assert torch.allclose(p[4], knee, atol=1e-6)
    assert torch.allclose(p[7], knee + torch.tensor([0.0, 0.0, -0.41]), atol=1e-6)
    # the toe: the foot offset (0, −0.06, 0.12) rotated by 90° about x → (0, −0.12, −0.06)
    assert torch.allclose(p[10], p[7] + torch.tensor([0.0, -0.12, -0.06]), atol=1e-6)

    local = torch.eye(3).repeat(22, 1, 1)
    local[0] = rot_y(torch.tensor(math.pi / 2))  # facing +x: the body's left points to −z
    p, _ = forward_kinematics(local, torch.zeros(3))
    assert torch.allclose(p[1], torch.tensor([0.0, -0.08, -0.085]), atol=1e-6)


def test_fk_batches_and_matches_loop():
    g = torch.Generator().manual_seed(0)
    angles = torch.rand(5, 22, generator=g)
    local = rot_x(angles) @ rot_y(angles * 2)
    root = torch.randn(5, 3, generator=g)
    p, glob = forward_kinematics(local, root)
    for b in range(5):
        pb, _ = forward_kinematics(local[b], root[b])
        assert torch.allclose(p[b], pb, atol=1e-6)
    # bone lengths are preserved
    for j in range(1, 22):
        bone = (p[:, j] - p[:, PARENTS[j]]).norm(dim=-1)
        assert torch.allclose(bone, OFFSETS[j].norm().expand(5), atol=1e-5)
    assert torch.allclose(glob @ glob.transpose(-1, -2), torch.eye(3).expand(5, 22, 3, 3), atol=1e-5)


def test_rotation_between_maps_u_to_v():
    g = torch.Generator().manual_seed(1)
    u, v = torch.randn(100, 3, generator=g), torch.randn(100, 3, generator=g)
    v[0] = -u[0]  # the opposite case
    u, v = u.double(), v.double()  # any dtype
    r = rotation_between(u, v)
    un, vn = u / u.norm(dim=-1, keepdim=True), v / v.norm(dim=-1, keepdim=True)
    assert torch.allclose((r @ un[..., None])[..., 0], vn, atol=1e-4)
    assert torch.allclose(torch.linalg.det(r), torch.ones(100, dtype=r.dtype), atol=1e-4)
