"""HumanML3D-style per-frame motion features and their exact inverse.

Per frame ``t`` (``D = 71``):

====================  ====  ==========================================================
root angular velocity  1    ``θ_t − θ_{t−1}`` (wrapped; ``θ_{−1} = 0``): the facing's yaw change
root linear velocity   2    ``R(θ_t)⁻¹ (p_t − p_{t−1})`` on the ground (``p_{−1} = 0``)
root height            1    the pelvis ``y``
joint positions        63   joints 1..21 relative to the root on the ground, in the facing frame
foot contacts          4    left ankle, left toe, right ankle, right toe ∈ {0, 1}
====================  ====  ==========================================================

The facing ``θ`` is computed from the hips and shoulders (as HumanML3D does), so features are a
function of joint positions alone. Because the first frame stores the absolute facing and
position, :func:`features_to_positions` inverts :func:`positions_to_features` exactly (contacts
aside), and it is differentiable — cost guidance uses it.
"""

from __future__ import annotations

import torch

from .skeleton import FEET

__all__ = ["DIM", "contacts", "facing", "features_to_positions", "features_to_root", "positions_to_features"]

DIM = 1 + 2 + 1 + 63 + 4
CONTACT_HEIGHT = (0.10, 0.05, 0.10, 0.05)  # ankle / toe height limits for contact (metres)
CONTACT_SPEED = 0.01  # metres per frame


def facing(positions: torch.Tensor) -> torch.Tensor:
    """Yaw ``θ`` ``[..., T]`` of the facing (0 = ``+z``) from hips and shoulders ``[..., T, 22, 3]``."""
    across = (positions[..., 1, :] - positions[..., 2, :]) + (positions[..., 16, :] - positions[..., 17, :])
    # forward = across × up, with ``across`` pointing to the body's left
    return torch.atan2(-across[..., 2], across[..., 0])


def _rotate(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate ground vectors ``[..., 2]`` (``x, z``) by yaw ``theta`` ``[...]`` (body → world)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1]], -1)


def contacts(positions: torch.Tensor) -> torch.Tensor:
    """Foot contact ``[..., T, 4]`` (float 0/1): a foot joint is low and (nearly) still."""
    feet = positions[..., list(FEET), :]  # [..., T, 4, 3]
    step = torch.diff(feet, dim=-3, prepend=feet[..., :1, :, :])
    speed = step.norm(dim=-1)
    nxt = torch.diff(feet, dim=-3, append=feet[..., -1:, :, :]).norm(dim=-1)
    low = feet[..., 1] < torch.tensor(CONTACT_HEIGHT, device=feet.device)
    return (low & (torch.minimum(speed, nxt) < CONTACT_SPEED)).float()


def positions_to_features(positions: torch.Tensor) -> torch.Tensor:
    """Joint positions ``[B, T, 22, 3]`` → features ``[B, T, 71]``."""
    theta = facing(positions)  # [B, T]
    root = positions[..., 0, :]
    ground = root[..., [0, 2]]
    prev_theta = torch.cat([torch.zeros_like(theta[:, :1]), theta[:, :-1]], 1)
    omega = torch.remainder(theta - prev_theta + torch.pi, 2 * torch.pi) - torch.pi
    prev_ground = torch.cat([torch.zeros_like(ground[:, :1]), ground[:, :-1]], 1)
    vel = _rotate(ground - prev_ground, -theta)
    rel = positions[..., 1:, :].clone()
    rel[..., 0] -= root[..., None, 0]
    rel[..., 2] -= root[..., None, 2]
    xz = _rotate(rel[..., [0, 2]], -theta[..., None])
    local = torch.stack([xz[..., 0], rel[..., 1], xz[..., 1]], -1)  # [B, T, 21, 3]
    return torch.cat([omega[..., None], vel, root[..., 1:2], local.flatten(-2), contacts(positions)], -1)


def features_to_root(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the root: features ``[B, T, 71]`` → facing ``θ`` ``[B, T]`` and ground path ``[B, T, 2]``."""
    theta = torch.cumsum(features[..., 0], -1)
    ground = torch.cumsum(_rotate(features[..., 1:3], theta), -2)
    return theta, ground


def features_to_positions(features: torch.Tensor) -> torch.Tensor:
    """Features ``[B, T, 71]`` → joint positions ``[B, T, 22, 3]`` (differentiable)."""
    theta, ground = features_to_root(features)
    local = features[..., 4:67].unflatten(-1, (21, 3))
    xz = _rotate(local[..., [0, 2]], theta[..., None]) + ground[..., None, :]
    joints = torch.stack([xz[..., 0], local[..., 1], xz[..., 1]], -1)
    root = torch.stack([ground[..., 0], features[..., 3], ground[..., 1]], -1)
    return torch.cat([root[..., None, :], joints], -2)
