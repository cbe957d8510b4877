"""Rule-based physics of motion: what an animator would reject, measured on joint positions alone.

None of these uses a network or our own judge; they read positions ``[B, T, 22, 3]`` (metres,
``y`` up, the floor at ``y = 0``), e.g. decoded samples or a written BVH read back through
``bvhio`` (:func:`bvh_physics`).

* ``accel``: mean joint acceleration (m/s²), ``‖p[t+1] − 2p[t] + p[t−1]‖·fps²`` over joints and frames;
* ``lowest_toe``: the lowest toe height (m) over all clips and frames (negative: below the floor);
* ``penetration``: the fraction of frames whose lowest toe is more than 2 cm below the floor;
* ``foot_skating``: the fraction of frame pairs in which a toe that stays below 5 cm moves more
  than 2.5 cm on the ground (:func:`~modalities.motion.metrics.foot_skating`);
* ``bone_cv``: per clip and bone, the coefficient of variation (std / mean) of the bone's length
  over time, averaged (0 for a rigid skeleton);
* ``bone_error``: the mean relative deviation of bone lengths from the skeleton's
  (:data:`~modalities.motion.skeleton.OFFSETS`);
* ``collapses``: the fraction of clips with a single-frame collapse — a frame whose pelvis is more
  than 15 cm away from the midpoint of its two neighbours (real clips, jumps included: under 6 cm).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .actions import FPS
from .skeleton import OFFSETS, PARENTS

__all__ = ["COLLAPSE", "PENETRATION", "bone_lengths", "bvh_physics", "join_acceleration", "physics"]

PENETRATION = 0.02  # metres below the floor that count as penetration
COLLAPSE = 0.15  # metres: a pelvis this far from the midpoint of its neighbours is a one-frame collapse
TOES = (10, 11)
_BONES = [j for j, p in enumerate(PARENTS) if p >= 0]


def bone_lengths(positions: torch.Tensor) -> torch.Tensor:
    """Lengths ``[..., 21]`` of the 21 bones (each joint to its parent) of ``[..., 22, 3]``."""
    parents = [PARENTS[j] for j in _BONES]
    return (positions[..., _BONES, :] - positions[..., parents, :]).norm(dim=-1)


def physics(positions: torch.Tensor, fps: int = FPS) -> dict[str, float]:
    """The physics metrics (module docstring) of motions ``[B, T, 22, 3]`` at ``fps`` frames a second."""
    from .skating import foot_skating

    pos = positions.detach().float().cpu()
    if pos.ndim != 4 or tuple(pos.shape[2:]) != (22, 3):
        raise ValueError(f"physics takes joint positions [B, T, 22, 3], got {tuple(pos.shape)}")
    second = pos[:, 2:] - 2 * pos[:, 1:-1] + pos[:, :-2]  # [B, T-2, 22, 3]
    toe = pos[..., list(TOES), 1].amin(-1)  # [B, T]
    bones = bone_lengths(pos)  # [B, T, 21]
    rest = OFFSETS[_BONES].norm(dim=-1)
    pelvis = second[..., 0, :].norm(dim=-1) / 2  # distance from the neighbours' midpoint
    return {
        "accel": float(second.norm(dim=-1).mean()) * fps * fps,
        "lowest_toe": float(toe.min()),
        "penetration": float((toe < -PENETRATION).float().mean()),
        "foot_skating": foot_skating(pos),
        "bone_cv": float((bones.std(1) / bones.mean(1).clamp_min(1e-6)).mean()),
        "bone_error": float(((bones - rest).abs() / rest).mean()),
        "collapses": float((pelvis > COLLAPSE).any(-1).float().mean()),
    }


def bvh_physics(positions: torch.Tensor, folder: Path, fps: int = FPS) -> dict[str, float]:
    """Write each motion of ``[B, T, 22, 3]`` as a BVH in ``folder``, read it back through ``bvhio``
    and measure the physics of what was read, plus ``bvh_deviation``: the mean distance (m) between
    the read-back joints and ``positions``."""
    from .bvh import read_bvh, write_bvh

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    back = torch.stack([read_bvh(write_bvh(m, folder / f"clip_{i:03d}.bvh", fps=fps))
                        for i, m in enumerate(positions.detach().float().cpu())])
    out = physics(back, fps)
    out["bvh_deviation"] = float((back - positions.detach().float().cpu()).norm(dim=-1).mean())
    return out


def join_acceleration(positions: torch.Tensor, given: torch.Tensor, fps: int = FPS) -> float:
    """How much harder motions accelerate at the joins of given and generated frames than elsewhere:
    the mean joint acceleration (m/s²) of ``[B, T, 22, 3]`` at frames within one frame of a change
    of the frame mask ``given`` ``[B, T]`` (bool; a frame is given when any joint is), divided by the
    mean elsewhere. ``1`` is seamless; in-betweening asks for at most 2."""
    pos = positions.detach().float().cpu()
    second = (pos[:, 2:] - 2 * pos[:, 1:-1] + pos[:, :-2]).norm(dim=-1).mean(-1) * fps * fps  # [B, T-2]
    g = given.cpu().float()
    change = (g[:, 1:] != g[:, :-1]).float()  # [B, T-1]: between frames t and t+1
    near = torch.zeros_like(g)
    near[:, 1:] += change
    near[:, :-1] += change  # the two frames at each join
    near = near[:, 1:-1] > 0  # aligned with ``second`` (centre frames 1..T-2)
    if not bool(near.any()) or bool(near.all()):
        raise ValueError("join_acceleration needs frames both at and away from a join")
    return float(second[near].mean() / second[~near].mean().clamp_min(1e-6))
