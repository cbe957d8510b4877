"""BVH files of motions, written and read through ``bvhio`` (a maintained BVH library).

Writing needs joint rotations, but generated motion is joint positions: :func:`positions_to_rotations`
recovers them (each joint's rotation aligns its rest child offsets with the actual child
directions — by orthogonal Procrustes for the pelvis and upper spine, which have several
children). The file's skeleton is :data:`~modalities.motion.skeleton.OFFSETS` (metres), so a motion
whose bone lengths match the skeleton (all procedural data) reads back to the same positions;
a generated motion reads back with the skeleton's bone lengths.

Reading goes through ``bvhio.readAsHierarchy`` and the library's own world-space transforms;
a file whose joints or hierarchy differ from the 22-joint skeleton is refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import torch

from framework.core.atomic import atomic_write

from .actions import FPS
from .skeleton import JOINTS, OFFSETS, PARENTS

__all__ = ["BVHError", "bvh_deviation", "positions_to_rotations", "read_bvh", "write_bvh"]

_CHILDREN = {j: [c for c in range(len(PARENTS)) if PARENTS[c] == j] for j in range(len(PARENTS))}


class BVHError(ValueError):
    """A BVH file that is not a motion of the 22-joint skeleton."""


def _procrustes(rest: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Rotations ``[T, 3, 3]`` best mapping rest vectors ``[K, 3]`` onto actual ``[T, K, 3]`` (Kabsch)."""
    h = rest.T @ actual  # [T, 3, 3]: Σ rest ⊗ actual
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return vt.transpose(-1, -2) @ fix @ u.transpose(-1, -2)


def positions_to_rotations(positions: torch.Tensor) -> torch.Tensor:
    """Local joint rotations ``[T, 22, 3, 3]`` whose FK (with :data:`OFFSETS`) reproduces the bone
    directions of ``positions`` ``[T, 22, 3]``; leaves get the identity."""
    from .skeleton import rotation_between

    pos = positions.double()
    T = pos.shape[0]
    off = OFFSETS.double()
    glob = torch.eye(3, dtype=torch.float64).repeat(T, len(JOINTS), 1, 1)
    for j in range(len(JOINTS)):
        kids = _CHILDREN[j]
        if len(kids) == 1:
            c = kids[0]
            glob[:, j] = rotation_between(off[c].expand(T, 3), pos[:, c] - pos[:, j])
        elif kids:
            glob[:, j] = _procrustes(off[kids], pos[:, kids] - pos[:, j, None])
        else:
            glob[:, j] = glob[:, PARENTS[j]]
    local = glob.clone()
    for j in range(1, len(JOINTS)):
        local[:, j] = glob[:, PARENTS[j]].transpose(-1, -2) @ glob[:, j]
    return local.float()


def bvh_deviation(positions: torch.Tensor) -> torch.Tensor:
    """How far (m) the joints a BVH of ``positions`` ``[T, 22, 3]`` stores are from them: ``[T, 22]``
    distances between ``positions`` and the forward kinematics of the recovered rotations on the
    file's skeleton (0 for a motion with the skeleton's bone lengths)."""
    from .skeleton import forward_kinematics

    pos = positions.detach().cpu().float()
    return (forward_kinematics(positions_to_rotations(pos), pos[:, 0])[0] - pos).norm(dim=-1)


def write_bvh(positions: torch.Tensor, path: str | Path, fps: int = FPS) -> Path:
    """Write one motion ``[T, 22, 3]`` (metres) as a BVH file (atomically) through ``bvhio``."""
    import bvhio
    import glm

    positions = positions.detach().cpu().float()
    if positions.ndim != 3 or tuple(positions.shape[1:]) != (len(JOINTS), 3):
        raise ValueError(f"write_bvh takes one motion [T, 22, 3], got {tuple(positions.shape)}")
    local = positions_to_rotations(positions)
    joints = [bvhio.BvhJoint(name, glm.vec3(*map(float, OFFSETS[j]))) for j, name in enumerate(JOINTS)]
    joints[0].Offset = glm.vec3(0.0)
    for j, p in enumerate(PARENTS):
        joints[j].Channels = (["Xposition", "Yposition", "Zposition"] if p < 0 else []) + \
            ["Zrotation", "Xrotation", "Yrotation"]
        if p >= 0:
            joints[p].Children.append(joints[j])
        if not _CHILDREN[j]:
            tip = 0.05 * OFFSETS[j] / max(float(OFFSETS[j].norm()), 1e-6)  # 5 cm along the last bone
            joints[j].EndSite = glm.vec3(*map(float, tip))
    for t in range(positions.shape[0]):
        for j in range(len(JOINTS)):
            r = local[t, j]
            q = glm.quat_cast(glm.mat3(*[float(v) for v in r.T.flatten()]))  # glm takes columns
            pos = glm.vec3(*map(float, positions[t, 0])) if j == 0 else glm.vec3(joints[j].Offset)
            joints[j].Keyframes.append(bvhio.Pose(pos, q))
    container = bvhio.BvhContainer(joints[0], positions.shape[0], 1.0 / fps)
    return atomic_write(path, lambda tmp: bvhio.writeBvh(str(tmp), container, percision=6))


def read_bvh(path: str | Path) -> torch.Tensor:
    """Joint positions ``[T, 22, 3]`` of a BVH file of the 22-joint skeleton, computed by ``bvhio``.

    Raises :class:`BVHError` naming what differs if the file's joints or hierarchy are not ours.
    """
    import bvhio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"BVH file {path} does not exist")
    try:
        bvh = bvhio.readAsBvh(str(path))
    except (SyntaxError, ValueError, IndexError) as e:
        raise BVHError(f"{path} is not a readable BVH file: {e}") from None
    layout = bvh.Root.layout()
    names = [j.Name for j, _, _ in layout]  # depth-first file order
    if sorted(names) != sorted(JOINTS):
        missing = [n for n in JOINTS if n not in names]
        extra = [n for n in names if n not in JOINTS]
        raise BVHError(f"{path} has a different skeleton: {len(names)} joints; expected the 22 SMPL joints"
                       + (f"; missing {missing[:5]}" if missing else "")
                       + (f"; unknown {extra[:5]}" if extra else ""))
    parent_of = {c.Name: j.Name for j, _, _ in layout for c in j.Children}
    for j, name in enumerate(JOINTS):
        want = JOINTS[PARENTS[j]] if PARENTS[j] >= 0 else None
        if parent_of.get(name) != want:
            raise BVHError(f"{path} has a different hierarchy: joint {name!r} hangs from "
                           f"{parent_of.get(name)!r}, expected {want!r}")
    root = bvhio.readAsHierarchy(str(path))
    frames = bvh.FrameCount
    out = torch.zeros(frames, len(JOINTS), 3)
    order = [JOINTS.index(j.Name) for j, _, _ in root.layout()]
    joints = [j for j, _, _ in root.layout()]
    for t in range(frames):
        root.loadPose(t, recursive=True)
        for i, j in zip(order, joints, strict=True):
            p = j.PositionWorld
            out[t, i] = torch.tensor([p.x, p.y, p.z])
    return out
