"""The 22-joint skeleton (SMPL / HumanML3D joint order) and forward kinematics.

Coordinates: metres, ``y`` up, the body faces ``+z`` at rest, ``+x`` is the body's left. The rest
pose is a T-pose with straight vertical legs; bone lengths follow the SMPL neutral body (rounded,
made left/right symmetric). Poses are local joint rotations (rotation matrices) plus a root
translation; :func:`forward_kinematics` turns them into joint positions.
"""

from __future__ import annotations

import torch

__all__ = ["FEET", "JOINTS", "OFFSETS", "PARENTS", "forward_kinematics", "rest_positions", "rot_x",
           "rot_y", "rot_z", "rotation_between"]

JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
#: joints whose height and velocity define foot contact: (left ankle, left toe, right ankle, right toe)
FEET: tuple[int, ...] = (7, 10, 8, 11)

# offset of each joint from its parent in the rest pose (metres); pelvis: its height standing
_OFFSETS = (
    (0.0, 0.94, 0.0),                                   # pelvis (root)
    (0.085, -0.08, 0.0), (-0.085, -0.08, 0.0),          # hips
    (0.0, 0.11, -0.02),                                 # spine1
    (0.0, -0.39, 0.0), (0.0, -0.39, 0.0),               # knees
    (0.0, 0.13, 0.02),                                  # spine2
    (0.0, -0.41, 0.0), (0.0, -0.41, 0.0),               # ankles
    (0.0, 0.06, 0.0),                                   # spine3
    (0.0, -0.06, 0.12), (0.0, -0.06, 0.12),             # feet (toes)
    (0.0, 0.21, -0.03),                                 # neck
    (0.075, 0.12, -0.01), (-0.075, 0.12, -0.01),        # collars
    (0.0, 0.09, 0.05),                                  # head
    (0.12, 0.045, -0.01), (-0.12, 0.045, -0.01),        # shoulders
    (0.26, 0.0, 0.0), (-0.26, 0.0, 0.0),                # elbows
    (0.25, 0.0, 0.0), (-0.25, 0.0, 0.0),                # wrists
)
OFFSETS = torch.tensor(_OFFSETS, dtype=torch.float32)  # [22, 3]
THIGH = 0.39
SHIN = 0.41
ANKLE_HEIGHT = 0.06  # the ankle's height above the floor with the foot flat (the toe on the floor)


def rot_x(a: torch.Tensor) -> torch.Tensor:
    """Rotations about ``x`` by angles ``a`` ``[...]`` (radians) → matrices ``[..., 3, 3]``."""
    a = torch.as_tensor(a, dtype=torch.float32)
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def rot_y(a: torch.Tensor) -> torch.Tensor:
    """Rotations about ``y`` (the vertical; positive turns ``+z`` towards ``+x``) → ``[..., 3, 3]``."""
    a = torch.as_tensor(a, dtype=torch.float32)
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def rot_z(a: torch.Tensor) -> torch.Tensor:
    """Rotations about ``z`` by angles ``a`` ``[...]`` → ``[..., 3, 3]``."""
    a = torch.as_tensor(a, dtype=torch.float32)
    c, s, o, z = torch.cos(a), torch.sin(a), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def rotation_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The smallest rotation taking unit vectors ``u`` to ``v`` (both ``[..., 3]``) → ``[..., 3, 3]``.

    Rodrigues' formula ``R = I + [w]× + [w]×² / (1 + c)`` with ``w = u × v``, ``c = u·v``; for
    ``u ≈ −v`` (undefined axis) a half turn about an axis perpendicular to ``u`` is used.
    """
    u = u / u.norm(dim=-1, keepdim=True)
    v = v / v.norm(dim=-1, keepdim=True)
    w = torch.cross(u, v, dim=-1)
    c = (u * v).sum(-1)
    zero = torch.zeros_like(c)
    k = torch.stack([zero, -w[..., 2], w[..., 1], w[..., 2], zero, -w[..., 0],
                     -w[..., 1], w[..., 0], zero], -1).reshape(*c.shape, 3, 3)
    eye = torch.eye(3, dtype=u.dtype, device=u.device).expand(*c.shape, 3, 3)
    out = eye + k + k @ k / (1 + c).clamp_min(1e-6)[..., None, None]
    opposite = c < -0.9999
    if bool(opposite.any()):
        x_axis, y_axis = (torch.tensor(v, dtype=u.dtype, device=u.device) for v in ([1.0, 0, 0], [0, 1.0, 0]))
        ref = torch.where(u[..., :1].abs() < 0.9, x_axis, y_axis)
        axis = torch.cross(u, ref.expand_as(u), dim=-1)
        axis = axis / axis.norm(dim=-1, keepdim=True)
        half = 2 * axis[..., :, None] * axis[..., None, :] - eye  # rotation by π about `axis`
        out = torch.where(opposite[..., None, None], half, out)
    return out


def forward_kinematics(local: torch.Tensor, root: torch.Tensor, offsets: torch.Tensor = OFFSETS
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint positions from local rotations.

    ``global[j] = global[parent] · local[j]`` and ``pos[j] = pos[parent] + global[parent] · offset[j]``;
    the root's position is ``root`` (its offset is ignored).

    Args:
        local: local joint rotations ``[..., 22, 3, 3]`` (the root's is its global rotation).
        root: root positions ``[..., 3]``.
        offsets: rest offsets ``[22, 3]``.

    Returns:
        positions ``[..., 22, 3]`` and global rotations ``[..., 22, 3, 3]``.
    """
    glob: list[torch.Tensor] = [local[..., 0, :, :]]
    pos: list[torch.Tensor] = [root]
    offsets = offsets.to(local.dtype)
    for j in range(1, len(PARENTS)):
        p = PARENTS[j]
        pos.append(pos[p] + (glob[p] @ offsets[j][:, None])[..., 0])
        glob.append(glob[p] @ local[..., j, :, :])
    return torch.stack(pos, -2), torch.stack(glob, -3)


def rest_positions() -> torch.Tensor:
    """Joint positions ``[22, 3]`` of the rest (T-) pose standing on the floor."""
    eye = torch.eye(3).expand(len(JOINTS), 3, 3)
    return forward_kinematics(eye, OFFSETS[0])[0]
