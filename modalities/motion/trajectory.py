"""The ``trajectory`` condition: the root's ground path per frame, dense or sparse.

A raw trajectory is ``[T, 2]`` (``x, z`` of the pelvis on the ground, metres, every frame given)
or ``[T, 3]`` (``x, z, given``: only frames with ``given = 1`` constrain the motion, as in
spatial-control systems), as a tensor, an array or a ``.npy`` file. The encoder registered as
``"motion/trajectory"`` turns it into ``[T, 3 + 2K]`` model tokens: scaled ``x, z`` (zero where
not given), the ``given`` mask, and sinusoidal features of the frame index, so cross-attention
knows which frame each point belongs to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.core.conditions import ConditionError
from framework.core.files import NUMERIC_KINDS, load_npy

from .actions import FRAMES

__all__ = ["DIM", "SCALE", "decode_trajectory", "encode_trajectory", "float_tensor", "load_trajectory",
           "trajectory_encoder"]

SCALE = 4.0  # metres per unit in the encoded tokens
FREQS = 8
DIM = 3 + 2 * FREQS


def float_tensor(value: Any, where: str) -> torch.Tensor:
    """``value`` (a tensor, array or nested list) as a float32 CPU tensor of the same shape; anything
    but plain real numbers is a :class:`ConditionError` naming ``where``."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ConditionError(f"{where}: holds complex numbers, not plain numbers")
        return value.detach().float().cpu()
    array = np.asarray(value)
    if array.dtype.kind not in NUMERIC_KINDS:
        raise ConditionError(f"{where}: holds {array.dtype} values, not plain numbers")
    with np.errstate(all="ignore"):  # an overflow to inf is reported by the caller's checks, not warned
        return torch.as_tensor(array.astype(np.float32))


def load_trajectory(value: Any, frames: int = FRAMES) -> torch.Tensor:
    """A raw trajectory (``.npy`` path, array or tensor ``[T, 2]`` / ``[T, 3]``) → ``[T, 3]``
    ``(x, z, given)``, checked: length ``frames``, no NaN/inf, ``given`` ∈ {0, 1}."""
    where = "trajectory"
    if isinstance(value, (str, Path)):
        path = Path(value)
        where = f"trajectory file {path}"
        if path.suffix != ".npy":
            raise ConditionError(f"{where}: expected a .npy file of shape [{frames}, 2] or [{frames}, 3]")
        value = load_npy(path, "trajectory file", max_elements=frames * 3, error=ConditionError)
    t = float_tensor(value, where)
    if t.ndim != 2 or t.shape[1] not in (2, 3):
        raise ConditionError(f"{where}: expected shape [{frames}, 2] (x, z per frame) or [{frames}, 3] "
                             f"(x, z, given); got {list(t.shape)}")
    if t.shape[0] != frames:
        raise ConditionError(f"{where}: has {t.shape[0]} frames, the model generates {frames} "
                             f"({frames / 20:.1f} s at 20 fps)")
    bad = ~torch.isfinite(t).all(-1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ConditionError(f"{where}: NaN or infinite values at frames {rows[:8]}"
                             f"{'…' if len(rows) > 8 else ''}; mark frames that are not given with "
                             f"a third column of 0 instead")
    if t.shape[1] == 2:
        t = torch.cat([t, torch.ones(frames, 1)], 1)
    elif not bool(((t[:, 2] == 0) | (t[:, 2] == 1)).all()):
        raise ConditionError(f"{where}: the third column ('given') must be 0 or 1")
    elif not bool(t[:, 2].any()):
        raise ConditionError(f"{where}: no frame is given (third column all 0)")
    return t


def encode_trajectory(raw: torch.Tensor) -> torch.Tensor:
    """Checked ``(x, z, given)`` rows ``[..., T, 3]`` → model tokens ``[..., T, DIM]``."""
    T = raw.shape[-2]
    given = raw[..., 2:3]
    xz = raw[..., :2] / SCALE * given
    frame = torch.arange(T, dtype=torch.float32) / T
    k = torch.arange(1, FREQS + 1, dtype=torch.float32) * math.pi
    pos = torch.cat([torch.sin(frame[:, None] * k), torch.cos(frame[:, None] * k)], -1)
    return torch.cat([xz, given, pos.expand(*raw.shape[:-1], 2 * FREQS)], -1)


def decode_trajectory(tokens: torch.Tensor) -> torch.Tensor:
    """Model tokens ``[..., T, DIM]`` → requested path ``[..., T, 2]`` in metres, NaN where not given."""
    xz = tokens[..., :2] * SCALE
    return torch.where(tokens[..., 2:3] > 0.5, xz, torch.full_like(xz, float("nan")))


def trajectory_encoder(values: Sequence[Any]) -> torch.Tensor:
    """The registered ``motion/trajectory`` encoder: raw trajectories → ``[n, T, DIM]``."""
    return torch.stack([encode_trajectory(load_trajectory(v)) for v in values])
