"""The dance judge of ``polyguide eval`` and the report: beat alignment and physics, no network.

Music beats come from the ``music`` condition's own features (the beat grid the ``audio/music``
encoder estimated: its phase and tempo channels, :func:`feature_beats`), so any request — a
user's WAV or a validation clip — is judged the same way; the report also scores against the
score's beats of the validation clips.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from framework.core.plugins import api

from ..actions import FPS
from ..physics import physics
from .beat_align import beat_alignment

__all__ = ["DanceJudge", "feature_beats"]


def feature_beats(music: torch.Tensor, fps: int = FPS) -> list[np.ndarray]:
    """Beat times (s) ``B × [K]`` encoded in ``audio/music`` or ``audio/beats`` features
    ``[B, T, ≥5]``: phase from frame 0's cos/sin, period from the tempo channel (bpm / 120)."""
    tempo_scale = api("audio/tempo_scale")
    out = []
    T = music.shape[1]
    for row in music.detach().float().cpu():
        period = 60.0 / (float(row[0, 4]) * tempo_scale)
        angle = math.atan2(float(row[0, 3]), float(row[0, 2]))  # = 2π (0 − phase) / period
        phase = (-angle / (2 * math.pi) * period) % period
        out.append(np.arange(phase, T / fps, period))
    return out


class DanceJudge:
    """Scores generated dances ``[B, T, 22, 3]``: ``beat_align`` (when the request carries
    ``music`` features ``[B, T, 17]``) and the physics metrics (:func:`~..physics.physics`)."""

    def evaluate(self, media: torch.Tensor, requested: Mapping[str, torch.Tensor]) -> dict[str, float]:
        out: dict[str, float] = {}
        if "music" in requested:
            out["beat_align"] = beat_alignment(media, feature_beats(requested["music"]))
        phys = physics(media)
        out.update({k: phys[k] for k in ("accel", "lowest_toe", "penetration", "foot_skating", "collapses")})
        return out
