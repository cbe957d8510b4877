"""Beat alignment of motion and music, as AIST++ (Li et al. 2021) and Bailando (Siyao et al. 2022).

*Kinematic beats* are the local minima of the motion's mean joint speed (Gaussian-smoothed over
time): the moments a dancer's body stops — a step landing, an arm reaching its pose. The **beat
alignment score** of one clip is the mean over its music beats ``t_m`` of
``exp(−min_k (t_k − t_m)² / (2σ²))`` over its kinematic beats ``t_k``, with σ = 0.05 s (AIST++ uses
σ = 3 frames at 60 fps). A clip with no kinematic beat scores 0; a clip whose music has no beat
inside it is not counted.

Music beats of real data come from the score (:mod:`.data`); for any audio they can come from
:func:`modalities.audio.beats.estimate_beats`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..actions import FPS

__all__ = ["SIGMA", "beat_alignment", "clip_alignment", "kinematic_beats"]

SIGMA = 0.05  # seconds (AIST++: 3 frames at 60 fps)
SMOOTH = 1.0  # frames: Gaussian smoothing of the joint speed before finding minima


def _smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of ``[B, T]`` along time (edges replicated)."""
    r = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    pad = torch.nn.functional.pad(x[:, None], (r, r), mode="replicate")
    return torch.nn.functional.conv1d(pad, k)[:, 0]


def kinematic_beats(positions: torch.Tensor, fps: int = FPS) -> list[np.ndarray]:
    """Kinematic beat times (seconds) of each motion of ``[B, T, 22, 3]``: frames whose smoothed
    mean joint speed (central differences, frames 1 … T − 2) is below both neighbours'."""
    pos = positions.detach().float().cpu()
    if pos.ndim != 4 or tuple(pos.shape[2:]) != (22, 3):
        raise ValueError(f"kinematic_beats takes joint positions [B, T, 22, 3], got {tuple(pos.shape)}")
    speed = (pos[:, 2:] - pos[:, :-2]).norm(dim=-1).mean(-1) / 2  # [B, T-2]: frames 1..T-2
    speed = _smooth(speed, SMOOTH)
    lower = (speed[:, 1:-1] < speed[:, :-2]) & (speed[:, 1:-1] < speed[:, 2:])
    return [(np.flatnonzero(row.numpy()) + 2) / fps for row in lower]  # +1 inner, +1 speed index→frame


def clip_alignment(kinematic: np.ndarray, music: np.ndarray, sigma: float = SIGMA) -> float | None:
    """The beat alignment score of one clip (module docstring); ``None`` without music beats."""
    music = np.asarray(music, dtype=np.float64)
    if music.size == 0:
        return None
    if len(kinematic) == 0:
        return 0.0
    d = np.abs(music[:, None] - np.asarray(kinematic, dtype=np.float64)[None, :]).min(1)
    return float(np.exp(-d ** 2 / (2 * sigma ** 2)).mean())


def beat_alignment(positions: torch.Tensor, music_beats: Sequence[np.ndarray], fps: int = FPS,
                   sigma: float = SIGMA) -> float:
    """Mean beat alignment score of motions ``[B, T, 22, 3]`` against their music's beat times
    (``B`` arrays of seconds; beats outside the clip are ignored)."""
    if len(music_beats) != positions.shape[0]:
        raise ValueError(f"{positions.shape[0]} motions but {len(music_beats)} music beat lists")
    seconds = positions.shape[1] / fps
    scores = []
    for kin, mus in zip(kinematic_beats(positions, fps), music_beats, strict=True):
        mus = np.asarray(mus, dtype=np.float64)
        s = clip_alignment(kin, mus[(mus > 1.0 / fps) & (mus < seconds - 1.0 / fps)], sigma)
        if s is not None:
            scores.append(s)
    return float(np.mean(scores)) if scores else float("nan")
