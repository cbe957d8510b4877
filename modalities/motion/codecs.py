"""Motion representations: normalised per-frame features (continuous), the motion autoencoder's
latents (continuous) and its VQ tokens (discrete).

Media are joint positions ``[B, T, 22, 3]``. :class:`Features` packs ``frames_per_token``
frames of the 71 HumanML3D-style features (normalised by the shipped mean/std) into one token;
:class:`Rotations` the same for the 110 rotation features; :class:`Tokens` maps the normalised
features through a trained motion VQ-VAE to ids; :class:`Latent` to its continuous latents
(normalised), which its convolutional decoder (trained with geometric losses) turns back into
features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from framework.core import shipped
from framework.core.plugins import Codec

from .actions import FRAMES
from .features import DIM, features_to_positions, features_to_root, positions_to_features
from .rotations import DIM as ROT_DIM
from .rotations import positions_to_rotation_features, rotation_features_to_positions
from .stats import STATS, feature_stats

__all__ = ["ROTATION_STATS", "STATS", "Features", "Latent", "Rotations", "Tokens", "compute_stats",
           "feature_stats"]

ROTATION_STATS = Path(__file__).resolve().parent / "rotation_feature_stats.npz"
STD_FLOOR = 0.01  # features that barely vary (e.g. the hips' lateral offset) are not blown up


def compute_stats(n: int = 2048, seed: int = 12345, rotations: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (``[71]``, or ``[110]`` for the rotation features) over ``n``
    generated clips (std floored at ``STD_FLOOR``; contact features keep mean 0, std 1)."""
    from .clips import generate

    encode = positions_to_rotation_features if rotations else positions_to_features
    feats = encode(torch.from_numpy(generate(n, seed)["positions"]))
    feats = feats.reshape(-1, feats.shape[-1])
    mean, std = feats.mean(0), feats.std(0).clamp_min(STD_FLOOR)
    mean[-4:], std[-4:] = 0.0, 1.0
    return mean.numpy().astype(np.float32), std.numpy().astype(np.float32)


def _check_media(media: torch.Tensor, frames: int) -> None:
    if media.ndim != 4 or tuple(media.shape[1:]) != (frames, 22, 3):
        raise ValueError(f"expected joint positions [B, {frames}, 22, 3], got {tuple(media.shape)}")


class Features(Codec):
    """Joint positions ``[B, T, 22, 3]`` ↔ normalised features ``[B, T / k, 71·k]`` (``k`` frames a token).

    Args:
        frames: clip length ``T``.
        frames_per_token: ``k`` (must divide ``T``).
    """

    dim, stats = DIM, STATS
    to_features, to_positions = staticmethod(positions_to_features), staticmethod(features_to_positions)

    def __init__(self, frames: int = FRAMES, frames_per_token: int = 2) -> None:
        if frames % frames_per_token:
            raise ValueError(f"frames_per_token {frames_per_token} does not divide frames {frames}")
        self.frames, self.k = int(frames), int(frames_per_token)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.frames // self.k, self.dim * self.k)

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        """Raw features ``[B, T, D]`` → tokens ``[B, T/k, D·k]``."""
        mean, std = feature_stats(str(self.stats))
        x = (feats - mean.to(feats)) / std.to(feats)
        return x.reshape(x.shape[0], *self.shape)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, T/k, D·k]`` → raw features ``[B, T, D]`` (differentiable)."""
        mean, std = feature_stats(str(self.stats))
        return x.reshape(x.shape[0], self.frames, self.dim) * std.to(x) + mean.to(x)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        _check_media(media, self.frames)
        return self.normalise(self.to_features(media.float()))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_positions(self.features(x))

    def root_path(self, x: torch.Tensor) -> torch.Tensor:
        """The decoded root ground path ``[B, T, 2]`` of tokens ``[B, T/k, D·k]`` (differentiable; the
        first four features integrate to it, without decoding the joints)."""
        return features_to_root(self.features(x))[1]


class Rotations(Features):
    """Joint positions ``[B, T, 22, 3]`` ↔ normalised rotation features ``[B, T / k, 110·k]``
    (:mod:`~modalities.motion.rotations`): decoding is forward kinematics on the fixed skeleton,
    so bone lengths are constant by construction.

    Args:
        frames: clip length ``T``.
        frames_per_token: ``k`` (must divide ``T``).
    """

    dim, stats = ROT_DIM, ROTATION_STATS
    to_features = staticmethod(positions_to_rotation_features)
    to_positions = staticmethod(rotation_features_to_positions)


class Tokens(Codec):
    """Joint positions ``[B, T, 22, 3]`` ↔ VQ-VAE token ids ``[B, T / downsample]``.

    Args:
        checkpoint: the tokenizer file (``recipes/motion/checkpoints/motion_vq.pt``, written by
            ``recipes/motion/train_vq.py``), loaded with ``weights_only=True``.
        frames: clip length ``T``.
    """

    def __init__(self, checkpoint: str = "recipes/motion/checkpoints/motion_vq.pt",
                 frames: int = FRAMES) -> None:
        from .vq import load_vq

        path = shipped.resolve(checkpoint)  # a shipped recipes/... file from anywhere
        self.checkpoint, self.frames = str(checkpoint), int(frames)
        self.vq = load_vq(path)
        self.vocab_size = self.vq.codebook_size
        self._features = (Rotations if self.vq.features == "rotations" else Features)(frames, 1)
        if self.frames % self.vq.downsample:
            raise ValueError(f"the motion tokenizer codes {self.vq.downsample} frames a token; "
                             f"{self.frames} frames is not a multiple")

    @property
    def shape(self) -> tuple[int]:
        return (self.frames // self.vq.downsample,)

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        _check_media(media, self.frames)
        with torch.no_grad():
            return self.vq.encode(self._features.encode(media))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._features.decode(self.vq.decode(x.long()))


class Latent(Codec):
    """Joint positions ``[B, T, 22, 3]`` ↔ the motion autoencoder's continuous latents
    ``[B, T / 4, code_dim]``, normalised per channel (the tokenizer's stored statistics).

    Decoding runs the tokenizer's convolutional decoder (trained on continuous latents as well as
    codes, with MDM's geometric losses, ``recipes/motion/train_vq.py``) and, for rotation
    features, forward kinematics: a smooth motion with the skeleton's bone lengths whatever the
    generator outputs. Differentiable, so cost guidance acts through it.

    Args:
        checkpoint: the tokenizer file (as for :class:`Tokens`).
        frames: clip length ``T`` (a multiple of the tokenizer's downsampling).
    """

    def __init__(self, checkpoint: str = "recipes/motion/checkpoints/motion_vq.pt",
                 frames: int = FRAMES) -> None:
        from .vq import load_vq

        self.checkpoint, self.frames = str(checkpoint), int(frames)
        self.vq = load_vq(shipped.resolve(checkpoint)).requires_grad_(False)  # a fixed decoder
        if self.frames % self.vq.downsample:
            raise ValueError(f"the motion autoencoder codes {self.vq.downsample} frames a latent; "
                             f"{self.frames} frames is not a multiple")
        self._features = (Rotations if self.vq.features == "rotations" else Features)(frames, 1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.frames // self.vq.downsample, int(self.vq.latent_mean.numel()))

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        _check_media(media, self.frames)
        with torch.no_grad():
            z = self.vq.latents(self._features.encode(media.float()))
        return (z - self.vq.latent_mean) / self.vq.latent_std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, T/4, C]`` → raw per-frame features ``[B, T, D]`` (differentiable)."""
        z = x * self.vq.latent_std.to(x) + self.vq.latent_mean.to(x)
        return self._features.features(self.vq.decode_latents(z))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self._features.to_positions(self.features(x))

    def root_path(self, x: torch.Tensor) -> torch.Tensor:
        """The decoded root ground path ``[B, T, 2]`` of latents ``[B, T/4, C]`` (differentiable)."""
        return features_to_root(self.features(x))[1]
