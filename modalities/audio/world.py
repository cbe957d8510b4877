"""The ``world`` representation: source-filter features decoded by the WORLD vocoder (``pyworld``).

Why: the ``mel`` representation keeps no pitch (64 mel bands cannot resolve the harmonics, and
Griffin-Lim invents a phase), so decoded speech has no pitch contour of its own; the ``codec``
imposes its 50-Hz frame rate on every voice (see docs/audio.md, "The speaker's pitch"). WORLD
(Morise et al. 2016) describes speech by its fundamental frequency F0, its spectral envelope and
its aperiodicity per frame, and synthesises a waveform with excitation pulses *at F0*: the
pitch is a feature the model generates, not an artefact of the decoder.

Per 10-ms frame (``frame_period``), ``3 + sp_dims`` values:

* ``lf0``: ``(ln F0 − ln 140) / 0.5`` (DIO + StoneMask), linearly interpolated through unvoiced
  frames so the contour is continuous;
* ``vuv``: +1 voiced, −1 unvoiced (decoded voiced where > 0);
* ``cap``: WORLD's coded aperiodicity (one band at 16 kHz), standardised;
* ``csp``: WORLD's coded spectral envelope (``sp_dims`` mel-cepstral coefficients, CheapTrick),
  each standardised.

The standardisation statistics ship as ``world_stats.npz`` beside this module (computed by
:func:`compute_stats` on 256 training renders, seed 0). ``frames_per_token`` frames form one
token: a 1-s clip is 25 tokens of 4 × 43 values. Decoding synthesises with ``pyworld`` and
applies the modality's level policy (:func:`.features.limit_peak`). Analysis runs on the CPU in
numpy (about 0.1 s a 1-s clip), so training data is encoded once and cached
(:class:`.world_data.WordsWorldData`, a module of its own so that sampling imports no
data module and no Lightning).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from framework.core.atomic import atomic_write
from framework.core.plugins import Codec

from .features import limit_peak
from .pitch import pyworld
from .speech import load_words

__all__ = ["STATS", "World", "compute_stats"]

STATS = Path(__file__).with_name("world_stats.npz")
LF0_CENTER, LF0_SCALE = float(np.log(140.0)), 0.5
DITHER = 1e-4  # added before analysis: WORLD's envelope of digital silence would be log(0)


def _interp_unvoiced(lf0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    if not voiced.any():
        return np.full_like(lf0, LF0_CENTER)
    idx = np.arange(len(lf0))
    return np.interp(idx, idx[voiced], lf0[voiced])


class World(Codec):
    """Audio ``[B, 1, samples]`` ↔ WORLD features ``[B, frames / frames_per_token,
    frames_per_token · (3 + sp_dims)]`` (see the module docstring).

    Args:
        sample_rate, samples: audio rate and clip length.
        frame_period: ms between frames (``samples`` must hold a whole number of frames).
        sp_dims: coded spectral-envelope dimensions.
        frames_per_token: consecutive frames packed into one token.
        f0_floor, f0_ceil: the F0 search range (Hz).
    """

    def __init__(self, sample_rate: int = 16_000, samples: int = 16_000, frame_period: float = 10.0,
                 sp_dims: int = 40, frames_per_token: int = 4, f0_floor: float = 60.0,
                 f0_ceil: float = 500.0) -> None:
        hop = sample_rate * frame_period / 1000
        if hop != int(hop) or samples % int(hop):
            raise ValueError(f"frame_period {frame_period} ms must give a whole hop dividing {samples} "
                             "samples")
        self.sample_rate, self.samples = int(sample_rate), int(samples)
        self.frame_period = float(frame_period)
        self.hop, self.frames = int(hop), samples // int(hop)
        if self.frames % frames_per_token:
            raise ValueError(f"frames_per_token {frames_per_token} must divide the {self.frames} frames")
        self.sp_dims, self.per_token = int(sp_dims), int(frames_per_token)
        self.f0_floor, self.f0_ceil = float(f0_floor), float(f0_ceil)
        self.dim = 3 + self.sp_dims
        pw = pyworld()
        self.fft_size = pw.get_cheaptrick_fft_size(self.sample_rate, self.f0_floor)
        self.mean, self.std = np.zeros(self.dim), np.ones(self.dim)
        if STATS.is_file():
            with np.load(STATS, allow_pickle=False) as f:
                if f["mean"].shape == (self.dim,) and int(f["sample_rate"]) == self.sample_rate:
                    self.mean, self.std = f["mean"].astype(np.float64), f["std"].astype(np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.frames // self.per_token, self.per_token * self.dim)

    def features(self, wave: np.ndarray) -> np.ndarray:
        """One clip ``[samples]`` → raw features ``[frames, 3 + sp_dims]`` (lf0, vuv, cap, csp)."""
        pw = pyworld()
        x = np.asarray(wave, dtype=np.float64).reshape(-1)
        x = x + DITHER * np.random.default_rng(0).standard_normal(len(x))
        f0, t = pw.dio(x, self.sample_rate, f0_floor=self.f0_floor, f0_ceil=self.f0_ceil,
                       frame_period=self.frame_period)
        f0 = pw.stonemask(x, f0, t, self.sample_rate)
        sp = pw.cheaptrick(x, f0, t, self.sample_rate, f0_floor=self.f0_floor, fft_size=self.fft_size)
        ap = pw.d4c(x, f0, t, self.sample_rate, fft_size=self.fft_size)
        csp = pw.code_spectral_envelope(sp, self.sample_rate, self.sp_dims)
        cap = pw.code_aperiodicity(ap, self.sample_rate)[:, :1]
        voiced = f0 > 0
        lf0 = _interp_unvoiced(np.log(np.where(voiced, f0, 1.0)), voiced)
        feats = np.concatenate([lf0[:, None], np.where(voiced, 1.0, -1.0)[:, None], cap, csp], 1)
        return feats[: self.frames]

    def _check(self, media: torch.Tensor) -> torch.Tensor:
        if media.ndim != 3 or media.shape[1] != 1 or media.shape[2] != self.samples:
            raise ValueError(f"expected mono audio [B, 1, {self.samples}] at {self.sample_rate} Hz, "
                             f"got {tuple(media.shape)}")
        return media[:, 0].double().cpu()

    def encode(self, media: torch.Tensor) -> torch.Tensor:
        raw = np.stack([self.features(w.numpy()) for w in self._check(media)])  # [B, frames, D]
        z = raw.copy()
        z[..., 0] = (raw[..., 0] - LF0_CENTER) / LF0_SCALE
        z[..., 2:] = (raw[..., 2:] - self.mean[2:]) / self.std[2:]
        return torch.from_numpy(z).float().reshape(len(z), *self.shape)

    def decode_unlimited(self, x: torch.Tensor) -> torch.Tensor:
        """WORLD's waveform ``[B, 1, samples]`` before the level policy."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected WORLD features [B, {self.shape[0]}, {self.shape[1]}], got "
                             f"{tuple(x.shape)}")
        pw = pyworld()
        z = x.detach().cpu().double().reshape(len(x), self.frames, self.dim).numpy()
        out = []
        for f in z:
            f0 = np.where(f[:, 1] > 0, np.exp(np.clip(f[:, 0] * LF0_SCALE + LF0_CENTER, np.log(40.0),
                                                       np.log(1000.0))), 0.0)
            cap = np.minimum(f[:, 2:3] * self.std[2] + self.mean[2], 0.0)  # aperiodicity ≤ 0 dB
            csp = f[:, 3:] * self.std[3:] + self.mean[3:]
            sp = pw.decode_spectral_envelope(np.ascontiguousarray(csp), self.sample_rate, self.fft_size)
            ap = pw.decode_aperiodicity(np.ascontiguousarray(cap), self.sample_rate, self.fft_size)
            y = pw.synthesize(np.ascontiguousarray(f0), sp, ap, self.sample_rate, self.frame_period)
            y = np.pad(y, (0, max(0, self.samples - len(y))))[: self.samples]
            out.append(np.nan_to_num(y))
        return torch.from_numpy(np.stack(out)).float()[:, None]

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return limit_peak(self.decode_unlimited(x))


def compute_stats(n: int = 256, seed: int = 0, out: Path = STATS) -> Path:
    """Per-dimension mean and standard deviation of the features of ``n`` word renders, written
    (atomically) to ``out``; ``lf0`` and ``vuv`` keep their fixed scaling."""
    codec = World()
    feats = np.concatenate([codec.features(w[0].numpy()) for w in load_words(n, seed).audio])
    mean, std = feats.mean(0), feats.std(0).clip(1e-3)
    mean[:2], std[:2] = 0.0, 1.0

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, mean=mean.astype(np.float32), std=std.astype(np.float32), sample_rate=16_000)

    return atomic_write(out, write)
