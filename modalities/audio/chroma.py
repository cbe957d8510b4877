"""Chromagrams and the ``melody`` condition encoder (MusicGen-style melody conditioning).

A chromagram folds the short-time power spectrum onto the 12 pitch classes (C, C♯, … B) and
normalises every frame, so it keeps *which notes sound when* and drops timbre, octave and level.
As in MusicGen's melody conditioning, the model is trained on the chromagram of its own clip and,
at sampling time, on the chromagram of any WAV the user gives (``--cond melody=tune.wav``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

from framework.core.conditions import ConditionError

from .features import SAMPLE_RATE, as_mono, read_wav

__all__ = ["CHROMA_FRAMES", "CLIP_SECONDS", "PITCH_CLASSES", "chromagram", "melody"]

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
CLIP_SECONDS = 4.0  # the music clips' length: a melody condition covers one clip
CHROMA_FRAMES = 32  # chroma frames per clip (8 per second)
N_FFT = 4096  # 3.9 Hz bins at 16 kHz: neighbouring semitones are resolved down to ~65 Hz (C2)


@cache
def _pitch_class_map(n_fft: int, sample_rate: int, f_min: float = 60.0,
                     f_max: float = 5000.0) -> torch.Tensor:
    """``[n_fft // 2 + 1, 12]``: each FFT bin between ``f_min`` and ``f_max`` to its nearest pitch class."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    fmap = np.zeros((len(freqs), 12), dtype=np.float32)
    ok = (freqs >= f_min) & (freqs <= f_max)
    midi = 69 + 12 * np.log2(freqs[ok] / 440.0)
    fmap[np.flatnonzero(ok), np.round(midi).astype(int) % 12] = 1.0
    return torch.from_numpy(fmap)


def chromagram(wave: torch.Tensor, *, frames: int = CHROMA_FRAMES, sample_rate: int = SAMPLE_RATE,
               n_fft: int = N_FFT) -> torch.Tensor:
    """Chromagram ``[B, frames, 12]`` of audio ``[B, (C,) T]``, each frame L2-normalised.

    The clip is cut into ``frames`` equal hops; frame ``i`` is the power spectrum of a Hann window
    centred at ``i · hop`` summed per pitch class. Silent frames stay all-zero.
    """
    x = as_mono(wave)
    hop = x.shape[-1] // frames
    if hop < 1:
        raise ValueError(f"a clip of {x.shape[-1]} samples is too short for {frames} chroma frames")
    spec = torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft, device=x.device),
                      center=True, pad_mode="constant", return_complex=True)[..., :frames]
    power = spec.real.square() + spec.imag.square()  # [B, n_fft/2+1, frames]
    chroma = torch.einsum("bft,fc->btc", power, _pitch_class_map(n_fft, sample_rate).to(x.device))
    norm = chroma.norm(dim=-1, keepdim=True)
    loud = norm > 1e-6 * norm.amax(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.where(loud, chroma / norm.clamp_min(1e-12), torch.zeros_like(chroma))


def _clip(value: str | Path | torch.Tensor, samples: int) -> torch.Tensor:
    """One melody source → a 16-kHz mono waveform ``[samples]`` (its first ``CLIP_SECONDS``)."""
    if isinstance(value, (str, Path)):
        wave = read_wav(value)[0]  # any rate → 16 kHz, stereo mixed down; errors name the file
        where = f"melody file {str(value)!r}"
    else:
        wave = torch.as_tensor(value, dtype=torch.float32)
        if wave.ndim == 2 and wave.shape[0] <= 2:
            wave = wave.mean(0)
        if wave.ndim != 1:
            raise ConditionError(f"a melody waveform must be [T] or [channels, T] at {SAMPLE_RATE} Hz, "
                                 f"got shape {tuple(wave.shape)}")
        where = "melody waveform"
    if wave.shape[0] < samples:
        raise ConditionError(f"{where} lasts {wave.shape[0] / SAMPLE_RATE:.2f} s; a melody condition "
                             f"needs at least {CLIP_SECONDS:g} s (longer clips are cut to their first "
                             f"{CLIP_SECONDS:g} s)")
    return wave[:samples]


def melody(values: Sequence[str | Path | torch.Tensor]) -> torch.Tensor:
    """The ``melody`` condition encoder: melodies → chromagrams ``[n, CHROMA_FRAMES, 12]``.

    Each value is a path to an audio file (WAV/FLAC/OGG at any sample rate, stereo mixed down) or a
    waveform ``[T]`` at 16 kHz; its first 4 s are used. An unreadable file or a clip shorter than
    4 s raises :class:`~framework.core.conditions.ConditionError` naming it.
    """
    samples = int(CLIP_SECONDS * SAMPLE_RATE)
    return chromagram(torch.stack([_clip(v, samples) for v in values]))
