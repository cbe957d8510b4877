"""Rotation features: the motion as joint rotations on the fixed skeleton, decoded by forward kinematics.

Per frame ``t`` (``D = 110``):

=======================  ====  =====================================================================
root angular velocity     1    as in :mod:`~modalities.motion.features` (the facing's yaw change)
root linear velocity      2    the ground step in the facing frame
root height               1    the pelvis ``y``
root orientation          6    the pelvis rotation relative to the facing yaw (6-D: two matrix columns)
joint rotations           96   local rotations (6-D) of the 16 joints that have children, beside the root
foot contacts             4    left ankle, left toe, right ankle, right toe ∈ {0, 1}
=======================  ====  =====================================================================

The first four values are those of the position features, so the root path decodes the same way
(:func:`~modalities.motion.features.features_to_root`). Positions come from
:func:`~modalities.motion.skeleton.forward_kinematics` with the skeleton's bone lengths, so every
decoded motion has constant bone lengths whatever the network outputs, and a BVH of it (which
stores the same skeleton) reads back to the same joints. The 6-D rotation (Zhou et al. 2019) is
made a rotation matrix by Gram–Schmidt, which is continuous and differentiable. Leaf joints
(toes, head, wrists) carry no rotation of their own: their positions follow their parents'.
"""

from __future__ import annotations

import torch

from .features import contacts, facing, features_to_root, positions_to_features
from .skeleton import PARENTS, forward_kinematics, rot_y

__all__ = ["DIM", "ROTATED", "positions_to_rotation_features", "rotation_features_to_positions"]

ROTATED: tuple[int, ...] = tuple(j for j in range(1, len(PARENTS)) if j in PARENTS)  # 16 joints
DIM = 4 + 6 + 6 * len(ROTATED) + 4


def _to6d(r: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` → their first two columns ``[..., 6]``."""
    return r[..., :, :2].transpose(-1, -2).flatten(-2)


def _from6d(d: torch.Tensor) -> torch.Tensor:
    """6-D values ``[..., 6]`` → rotation matrices ``[..., 3, 3]`` (Gram–Schmidt)."""
    a, b = d[..., :3], d[..., 3:]
    x = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b = b - (x * b).sum(-1, keepdim=True) * x
    y = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.stack([x, y, torch.cross(x, y, dim=-1)], -1)


def positions_to_rotation_features(positions: torch.Tensor) -> torch.Tensor:
    """Joint positions ``[B, T, 22, 3]`` → rotation features ``[B, T, 110]``.

    Rotations are recovered from the bone directions
    (:func:`~modalities.motion.bvh.positions_to_rotations`); for a motion with the skeleton's bone
    lengths (all procedural data) :func:`rotation_features_to_positions` gives it back exactly.
    """
    from .bvh import positions_to_rotations

    B, T = positions.shape[:2]
    local = positions_to_rotations(positions.reshape(B * T, 22, 3)).reshape(B, T, 22, 3, 3).to(positions)
    theta = facing(positions)
    root = rot_y(-theta).to(positions) @ local[:, :, 0]
    head = positions_to_features(positions)[..., :4]
    joints = _to6d(local[:, :, list(ROTATED)]).flatten(-2)
    return torch.cat([head, _to6d(root), joints, contacts(positions)], -1)


def rotation_features_to_positions(features: torch.Tensor) -> torch.Tensor:
    """Rotation features ``[B, T, 110]`` → joint positions ``[B, T, 22, 3]`` by forward kinematics
    (differentiable; bone lengths are the skeleton's)."""
    theta, ground = features_to_root(features)
    B, T = features.shape[:2]
    local = torch.eye(3, dtype=features.dtype, device=features.device).repeat(B, T, 22, 1, 1)
    local[:, :, 0] = rot_y(theta).to(features) @ _from6d(features[..., 4:10])
    local[:, :, list(ROTATED)] = _from6d(features[..., 10:10 + 6 * len(ROTATED)].unflatten(-1, (-1, 6)))
    root = torch.stack([ground[..., 0], features[..., 3], ground[..., 1]], -1)
    return forward_kinematics(local, root)[0]
