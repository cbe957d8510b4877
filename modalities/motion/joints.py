"""The ``joints`` condition: target positions for any joints at any frames (OmniControl-style control,
keyframes for in-betweening, the first frames for prefix continuation).

A raw request is ``[T, 22, 3]`` (metres, ``y`` up; NaN where a joint is not constrained at a frame)
or ``[T, 22, 4]`` (``x, y, z, given`` with ``given`` ∈ {0, 1}), as a tensor, an array or a ``.npy``
file. The encoder registered as ``"motion/joints"`` turns it into ``[T, 22·4 + 2K]`` model tokens:
the scaled positions (zero where not given), the mask, and sinusoidal features of the frame index.
The ``joints`` cost (:func:`~modalities.motion.costs.joints_cost`) pulls the decoded joints to the
given targets; training clips carry random targets taken from themselves (:func:`random_targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.core.conditions import ConditionError
from framework.core.files import load_npy

from .actions import FRAMES
from .trajectory import FREQS, SCALE, encode_trajectory, float_tensor

__all__ = ["DIM", "decode_joints", "encode_joints", "joints_encoder", "load_joints", "random_targets"]

JOINTS = 22
DIM = JOINTS * 4 + 2 * FREQS


def load_joints(value: Any, frames: int = FRAMES) -> torch.Tensor:
    """A raw request (``.npy`` path, array or tensor ``[T, 22, 3]`` with NaN = free, or ``[T, 22, 4]``)
    → ``[T, 22, 4]`` ``(x, y, z, given)``, checked: length ``frames``, finite targets, a 0/1 mask,
    at least one target."""
    where = "joints"
    if isinstance(value, (str, Path)):
        path = Path(value)
        where = f"joints file {path}"
        if path.suffix != ".npy":
            raise ConditionError(f"{where}: expected a .npy file of shape [{frames}, 22, 3] (NaN where free) "
                                 f"or [{frames}, 22, 4] (x, y, z, given)")
        value = load_npy(path, "joints file", max_elements=frames * JOINTS * 4, error=ConditionError)
    t = float_tensor(value, where)
    if t.ndim != 3 or t.shape[1] != JOINTS or t.shape[2] not in (3, 4):
        raise ConditionError(f"{where}: expected shape [{frames}, 22, 3] (NaN where a joint is free) or "
                             f"[{frames}, 22, 4] (x, y, z, given); got {list(t.shape)}")
    if t.shape[0] != frames:
        raise ConditionError(f"{where}: has {t.shape[0]} frames, the model generates {frames} "
                             f"({frames / 20:.1f} s at 20 fps)")
    if t.shape[2] == 3:
        given = torch.isfinite(t).all(-1)
        partial = torch.isfinite(t).any(-1) & ~given
        if bool(partial.any()):
            f, j = partial.nonzero()[0].tolist()
            raise ConditionError(f"{where}: joint {j} at frame {f} has some coordinates NaN and others not; "
                                 f"a free joint is NaN in all three")
        t = torch.cat([torch.nan_to_num(t, nan=0.0), given[..., None].float()], -1)
    else:
        if not bool(((t[..., 3] == 0) | (t[..., 3] == 1)).all()):
            raise ConditionError(f"{where}: the fourth column ('given') must be 0 or 1")
        bad = (t[..., 3] == 1) & ~torch.isfinite(t[..., :3]).all(-1)
        if bool(bad.any()):
            f, j = bad.nonzero()[0].tolist()
            raise ConditionError(f"{where}: joint {j} at frame {f} is given but not finite")
        t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
    if not bool(t[..., 3].any()):
        raise ConditionError(f"{where}: no joint is given at any frame")
    return t


def encode_joints(raw: torch.Tensor) -> torch.Tensor:
    """Checked ``(x, y, z, given)`` ``[..., T, 22, 4]`` → model tokens ``[..., T, DIM]``."""
    given = raw[..., 3:4]
    xyz = raw[..., :3] / SCALE * given
    frames = encode_trajectory(torch.zeros(*raw.shape[:-2], 3))[..., 3:]  # the frame-index features
    return torch.cat([torch.cat([xyz, given], -1).flatten(-2), frames], -1)


def decode_joints(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model tokens ``[..., T, DIM]`` → targets ``[..., T, 22, 3]`` (metres) and mask ``[..., T, 22]``."""
    per = tokens[..., :JOINTS * 4].unflatten(-1, (JOINTS, 4))
    return per[..., :3] * SCALE, per[..., 3]


def joints_encoder(values: Sequence[Any]) -> torch.Tensor:
    """The registered ``motion/joints`` encoder: raw requests → ``[n, T, DIM]``."""
    return torch.stack([encode_joints(load_joints(v)) for v in values])


def random_targets(positions: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Training targets ``[T, 22, 4]`` taken from a clip's own joints ``[T, 22, 3]``: one of a few
    joints at a few frames (control), whole poses at a few key frames (in-betweening), or the first
    second (prefix continuation)."""
    T = positions.shape[0]
    given = torch.zeros(T, JOINTS)
    kind = rng.random()
    if kind < 0.5:  # 1-3 joints at 1-8 frames
        joints = rng.choice(JOINTS, size=int(rng.integers(1, 4)), replace=False)
        frames = rng.choice(T, size=int(rng.integers(1, 9)), replace=False)
        given[np.ix_(frames, joints)] = 1.0
    elif kind < 0.8:  # key poses
        frames = rng.choice(T, size=int(rng.integers(1, 5)), replace=False)
        given[frames] = 1.0
    else:  # a prefix
        given[:int(rng.integers(5, 21))] = 1.0
    return torch.cat([positions * given[..., None], given[..., None]], -1)
