"""Channels → skeleton pose: analytic two-bone leg IK (a planted foot stays where it landed, the
pelvis dipping to keep it in reach), spine lean, arm directions with gait-driven swing, and
forward kinematics (:func:`~modalities.motion.skeleton.forward_kinematics`)."""

from __future__ import annotations

import numpy as np
import torch

from .channels import Channels
from .skeleton import ANKLE_HEIGHT, OFFSETS, SHIN, THIGH, forward_kinematics, rot_x, rot_y, rotation_between

__all__ = ["DIP_RATE", "REACH", "ankle_forward", "channels_to_pose", "two_bone_ik"]

REACH = 0.995 * (THIGH + SHIN)
DIP_RATE = 0.02  # metres a frame: how fast the pelvis may dip to keep a planted foot in reach


def two_bone_ik(hip: torch.Tensor, target: torch.Tensor, pole: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic leg IK: global rotations ``[T, 3, 3]`` of hip and knee so that the ankle reaches
    ``target`` (clamped to the leg's reach), the knee bending towards ``pole`` (``[T, 3]`` each)."""
    a = target - hip
    dist = a.norm(dim=-1, keepdim=True).clamp(0.05, REACH)
    a_hat = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    s = torch.cross(pole, a_hat, dim=-1)
    s = s / s.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    u = torch.cross(a_hat, s, dim=-1)
    cos_a = ((THIGH ** 2 + dist ** 2 - SHIN ** 2) / (2 * THIGH * dist)).clamp(-1, 1)
    knee = hip + THIGH * (cos_a * a_hat + (1 - cos_a ** 2).sqrt() * u)
    ankle = hip + dist * a_hat
    d1 = (knee - hip) / THIGH
    d2 = (ankle - knee) / (ankle - knee).norm(dim=-1, keepdim=True)

    def frame(d: torch.Tensor) -> torch.Tensor:
        y = -d
        x = s - (s * y).sum(-1, keepdim=True) * y
        x = x / x.norm(dim=-1, keepdim=True)
        return torch.stack([x, y, torch.cross(x, y, dim=-1)], -1)  # columns

    return frame(d1), frame(d2)


def channels_to_pose(st: Channels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Channels → local rotations ``[T, 22, 3, 3]``, root positions ``[T, 3]`` and positions."""
    T = st.T
    f = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)
    theta = f(st.theta)
    yaw = rot_y(theta)
    pelvis_rot = yaw @ rot_x(f(st.pelvis_pitch))
    fwd = torch.stack([torch.sin(theta), torch.zeros(T), torch.cos(theta)], -1)
    ground = f(st.ground)
    root_xz = ground + f(st.shift)[:, None] * fwd[:, [0, 2]]
    targets, poles = {}, {}
    for side in ("left", "right"):
        g, lift, fw = f(st.foot[side]), f(st.lift[side]), f(st.forward[side])
        fyaw = f(st.foot_yaw[side])
        ffwd = torch.stack([torch.sin(fyaw), torch.zeros(T), torch.cos(fyaw)], -1)
        targets[side] = torch.stack([g[:, 0], ANKLE_HEIGHT + lift, g[:, 1]], -1) + fw[:, None] * ffwd
        p = fwd + ffwd
        poles[side] = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    # pelvis height: as wished, but low enough that every planted foot is within the leg's reach
    hip_off = {side: (pelvis_rot @ OFFSETS[j][:, None])[..., 0] for side, j in (("left", 1), ("right", 2))}
    height = f(st.height)
    for side in ("left", "right"):
        hip_xz = root_xz + hip_off[side][:, [0, 2]]
        horiz = (targets[side][:, [0, 2]] - hip_xz).norm(dim=-1)
        reach_up = (REACH ** 2 - horiz.clamp(max=REACH * 0.999) ** 2).sqrt()
        limit = targets[side][:, 1] + reach_up - hip_off[side][:, 1]
        planted = f(st.contact[side]).bool()
        height = torch.where(planted, torch.minimum(height, limit - 0.002), height)
    # the pelvis dips and recovers at most DIP_RATE a frame: widen each dip (lowering is always in reach)
    dip = f(st.height) - height
    for i in range(1, T):
        dip[i] = torch.maximum(dip[i], dip[i - 1] - DIP_RATE)
    for i in range(T - 2, -1, -1):
        dip[i] = torch.maximum(dip[i], dip[i + 1] - DIP_RATE)
    height = f(st.height) - dip
    root = torch.stack([root_xz[:, 0], height, root_xz[:, 1]], -1)
    local = torch.eye(3).repeat(T, 22, 1, 1)
    local[:, 0] = pelvis_rot
    lean = f(st.lean)
    for j in (3, 6, 9):
        local[:, j] = rot_x(lean / 3)
    local[:, 12] = rot_x(-lean * 0.4)
    local[:, 15] = rot_x(-lean * 0.3)
    glob_spine3 = pelvis_rot @ local[:, 3] @ local[:, 6] @ local[:, 9]
    # legs
    for side, (hj, kj, aj) in (("left", (1, 4, 7)), ("right", (2, 5, 8))):
        hip = root + hip_off[side]
        r_hip, r_knee = two_bone_ik(hip, targets[side], poles[side])
        r_foot = rot_y(f(st.foot_yaw[side]))
        local[:, hj] = pelvis_rot.transpose(-1, -2) @ r_hip
        local[:, kj] = r_hip.transpose(-1, -2) @ r_knee
        local[:, aj] = r_knee.transpose(-1, -2) @ r_foot
    # arms: gait-driven swing (opposite to the same-side leg) on top of the channel directions
    left_fwd = ankle_forward(targets["left"], root, theta)
    right_fwd = ankle_forward(targets["right"], root, theta)
    for side, (sj, ej), sgn, other in (("left", (16, 18), 1.0, right_fwd),
                                       ("right", (17, 19), -1.0, left_fwd)):
        up, fa = (f(x) for x in st.arms[side])
        swing = f(st.swing_arms) * (other / 0.3).clamp(-1, 1) * 0.5  # radians
        up = (rot_x(-swing) @ up[..., None])[..., 0]  # forward swing: rotate the arm towards +z
        bend = torch.deg2rad(f(st.elbow_bend) + 25 * f(st.swing_arms).clamp(max=1)) * 0.6
        fa = (rot_x(-(swing + bend)) @ fa[..., None])[..., 0]
        w_up = (yaw @ up[..., None])[..., 0]
        w_fa = (yaw @ fa[..., None])[..., 0]
        rest = torch.tensor([sgn, 0.0, 0.0]).expand(T, 3)
        g_sh = rotation_between(rest, w_up)
        g_el = rotation_between(rest, w_fa)
        local[:, sj] = glob_spine3.transpose(-1, -2) @ g_sh  # collars keep the identity
        local[:, ej] = g_sh.transpose(-1, -2) @ g_el
    positions, _ = forward_kinematics(local, root)
    return local, root, positions


def ankle_forward(target: torch.Tensor, root: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """How far an ankle target is ahead of the pelvis along the heading ``[T]``."""
    d = target - root
    return d[:, 0] * torch.sin(theta) + d[:, 2] * torch.cos(theta)
