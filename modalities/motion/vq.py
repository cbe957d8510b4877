"""A small motion VQ-VAE (1-D convolutions over time, as in T2M-GPT) on normalised features.

``[B, T, D]`` → encoder (two stride-2 convolutions: ``T/4`` latents) → nearest codebook entry
(EMA codebook updates, dead codes restarted from the batch) → decoder → ``[B, T, D]``, where the
features are the position features (``features``, ``D = 71``) or the rotation features
(``rotations``, ``D = 110``, decoded by forward kinematics: constant bone lengths). The decoder
also takes the continuous latents (before quantisation): the flow model generates those
(the ``latent`` representation), the masked model the code ids. Saved as a plain dict (config +
tensors) so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from framework.core.atomic import atomic_write

from .features import DIM
from .rotations import DIM as ROT_DIM

__all__ = ["MotionVQ", "load_vq", "save_vq"]


class _Res(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.GELU(), nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation),
                                 nn.GELU(), nn.Conv1d(width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class MotionVQ(nn.Module):
    """Motion VQ-VAE.

    Args:
        width: channels of the convolutions.
        code_dim: latent size.
        codebook_size: number of codes (the token vocabulary).
        downsample: temporal downsampling (a power of 2).
        decay: EMA decay of the codebook.
        features: the per-frame features it codes, ``features`` (71) or ``rotations`` (110).
    """

    def __init__(self, width: int = 128, code_dim: int = 64, codebook_size: int = 256, downsample: int = 4,
                 decay: float = 0.99, features: str = "features") -> None:
        super().__init__()
        if features not in ("features", "rotations"):
            raise ValueError(f"motion VQ features must be 'features' or 'rotations', got {features!r}")
        self.config = {"width": width, "code_dim": code_dim, "codebook_size": codebook_size,
                       "downsample": downsample, "decay": decay, "features": features}
        self.features = features
        dim = ROT_DIM if features == "rotations" else DIM
        self.codebook_size, self.downsample, self.decay = codebook_size, downsample, decay
        n = downsample.bit_length() - 1
        if 2 ** n != downsample:
            raise ValueError(f"downsample must be a power of 2, got {downsample}")
        enc: list[nn.Module] = [nn.Conv1d(dim, width, 3, padding=1)]
        for _ in range(n):
            enc += [nn.Conv1d(width, width, 4, stride=2, padding=1), _Res(width, 1), _Res(width, 3)]
        enc += [nn.GELU(), nn.Conv1d(width, code_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, padding=1)]
        for _ in range(n):
            dec += [_Res(width, 3), _Res(width, 1), nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv1d(width, width, 3, padding=1)]
        dec += [nn.GELU(), nn.Conv1d(width, dim, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        # per-channel mean / std of the continuous latents over training clips (set after training):
        # the ``latent`` representation normalises by them
        self.register_buffer("latent_mean", torch.zeros(code_dim))
        self.register_buffer("latent_std", torch.ones(code_dim))

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, T, D]`` → latents ``[B, T/d, code_dim]``."""
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Code ids ``[B, L]`` of latents ``[B, L, code_dim]``."""
        d = (z.pow(2).sum(-1, keepdim=True) - 2 * z @ self.codebook.T + self.codebook.pow(2).sum(-1))
        return d.argmin(-1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, T, D]`` → token ids ``[B, T/d]``."""
        return self.nearest(self.latents(x))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` → features ``[B, L·d, D]``."""
        if bool(((ids < 0) | (ids >= self.codebook_size)).any()):
            raise ValueError(f"token ids must lie in 0..{self.codebook_size - 1}")
        return self.decode_latents(self.codebook[ids])

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, L, code_dim]`` (codes or continuous) → features ``[B, L·d, D]`` (differentiable)."""
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, continuous: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction ``[B, T, D]``, commitment loss and ids (training also EMA-updates the codebook).

        ``continuous`` ``[B]`` (bool) decodes those clips from their continuous latents instead of
        their codes, so that the decoder serves both (``latent`` and ``tokens`` representations)."""
        z = self.latents(x)
        ids = self.nearest(z)
        q = self.codebook[ids]
        if self.training:
            self._ema_update(z.detach().reshape(-1, z.shape[-1]), ids.reshape(-1))
        commit = F.mse_loss(z, q.detach())
        q = z + (q - z).detach()  # straight-through
        if continuous is not None:
            q = torch.where(continuous[:, None, None], z, q)
        return self.decode_latents(q), commit, ids

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        onehot = F.one_hot(ids, self.codebook_size).type(z.dtype)
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.T @ z, alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + self.codebook_size * 1e-5) * n
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < 1e-3  # restart unused codes at random batch latents
        if bool(dead.any()):
            pick = torch.randint(len(z), (int(dead.sum()),), device=z.device)
            self.codebook[dead] = z[pick]
            self.ema_sum[dead] = z[pick]
            self.ema_count[dead] = 1.0


def save_vq(vq: MotionVQ, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the tokenizer (config + tensors, no pickled code) atomically."""
    blob = {"config": dict(vq.config), "state_dict": vq.state_dict(), "extra": dict(extra or {})}
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))


def load_vq(path: str | Path) -> MotionVQ:
    """Read a tokenizer written by :func:`save_vq` (``weights_only=True``), in eval mode.

    Its declared sizes (``config``) must fit the weights it holds, which is checked before memory
    is spent on them (:func:`framework.core.sizes.build_within`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a tokenizer, or sizes that disagree with its weights (a ``UserError``).
    """
    from framework.core.sizes import build_within
    from framework.model.checkpoints import read_checkpoint

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"motion tokenizer {path} does not exist; train it with "
                                f"recipes/motion/train_vq.py")
    blob = read_checkpoint(path)  # a CheckpointError naming the file for anything that is not plain data
    if not isinstance(blob, dict) or not isinstance(blob.get("config"), dict) or \
            not isinstance(blob.get("state_dict"), dict):
        raise ValueError(f"{path} is not a motion tokenizer (it lacks config/state_dict)")
    config = blob["config"]
    down = config.get("downsample", 4)
    depth = down.bit_length() if isinstance(down, int) and not isinstance(down, bool) else None
    state = dict(blob["state_dict"])
    code_dim = config.get("code_dim", 64)
    if isinstance(code_dim, int) and "latent_mean" not in state:  # written before the latent statistics
        state["latent_mean"], state["latent_std"] = torch.zeros(code_dim), torch.ones(code_dim)
    vq = build_within(lambda: MotionVQ(**config), depth=depth, weights=state,
                      where=f"motion tokenizer {path}")
    vq.load_state_dict(state)
    return vq.eval()
