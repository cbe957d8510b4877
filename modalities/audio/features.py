"""Spectral features shared by the audio modality: mono mix-down, resampling, log-mel.

Everything runs on ``torch.stft`` (torchaudio cannot be imported against the CPU torch here); the
log-mel is the ``mel`` representation's (:mod:`.mel`) and resampling is scipy's polyphase filter,
so neither is re-implemented here.
"""

from __future__ import annotations

from functools import cache
from math import gcd
from pathlib import Path

import numpy as np
import torch

from framework.core.atomic import atomic_write
from framework.core.conditions import ConditionError

from .level import PEAK_TARGET, limit_peak

__all__ = ["FULL_SCALE", "PEAK_TARGET", "SAMPLE_RATE", "AudioFileError", "as_mono", "clipped_fraction",
           "limit_peak", "log_mel", "read_wav", "resample", "save_wav"]

SAMPLE_RATE = 16_000  # every clip of the modality is 16 kHz mono
#: a sample this loud is at full scale (it is written as ±32767 in a 16-bit WAV)
FULL_SCALE = 32766.5 / 32767


class AudioFileError(ConditionError):
    """An audio file that cannot be read (missing, not audio, empty); the message names it."""


def as_mono(wave: torch.Tensor) -> torch.Tensor:
    """``[B, T]``, ``[B, 1, T]`` or ``[B, C, T]`` → ``[B, T]`` float (channels averaged)."""
    if wave.ndim == 2:
        return wave.float()
    if wave.ndim == 3:
        return wave.float().mean(1)
    raise ValueError(f"expected audio [B, T] or [B, channels, T], got shape {tuple(wave.shape)}")


def wave_of(value: str | Path | torch.Tensor, what: str, formats: str) -> torch.Tensor:
    """An audio condition's value → 16-kHz mono ``[T]``: a file path is read (any rate, channels
    mixed down; the error names the file and ``formats``), a waveform ``[T]`` or ``[channels, T]``
    is mixed down; any other shape is a :class:`ConditionError` naming ``what``."""
    from framework.core.conditions import ConditionError

    if isinstance(value, (str, Path)):
        try:
            return read_wav(value)[0]
        except AudioFileError as e:
            raise AudioFileError(f"{e} ({formats})") from e
    wave = torch.as_tensor(value, dtype=torch.float32)
    if wave.ndim == 2 and wave.shape[0] <= 2:
        wave = wave.mean(0)
    if wave.ndim != 1:
        raise ConditionError(f"a {what} waveform must be [T] or [channels, T] at {SAMPLE_RATE} Hz, "
                             f"got shape {tuple(wave.shape)}")
    return wave


def clipped_fraction(wave: torch.Tensor) -> torch.Tensor:
    """Per clip, the fraction ``[B]`` of samples of audio ``[B, (C,) T]`` at full scale
    (``|x| ≥`` :data:`FULL_SCALE`: written as ±32767 in a 16-bit WAV, or beyond)."""
    return (as_mono(wave).abs() >= FULL_SCALE).float().mean(-1)


def log_mel(wave: torch.Tensor, *, sample_rate: int = SAMPLE_RATE, n_fft: int = 512, hop: int = 160,
            n_mels: int = 64, floor_db: float = -100.0) -> torch.Tensor:
    """Log-mel spectrogram in dB ``[B, n_mels, frames]`` of audio ``[B, (C,) T]``, floored at
    ``floor_db`` (``frames = T // hop + 1``: centred Hann frames; the ``mel`` representation's
    STFT and HTK filter bank)."""
    from .mel import log_mel as mel_db
    from .mel import mel_filters

    x = as_mono(wave)
    fb = _filters(n_fft, n_mels, sample_rate, mel_filters)
    return mel_db(x, fb, n_fft, hop, x.shape[-1] // hop + 1, floor_db).transpose(1, 2)


@cache
def _filters(n_fft: int, n_mels: int, sample_rate: int, make) -> torch.Tensor:
    return make(n_fft, n_mels, sample_rate)


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Resample ``[..., T]`` from ``orig_sr`` to ``new_sr`` (scipy polyphase, anti-aliased)."""
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} → {new_sr}")
    if orig_sr == new_sr:
        return wave
    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(new_sr))
    out = resample_poly(wave.detach().cpu().double().numpy(), new_sr // g, orig_sr // g, axis=-1)
    return torch.from_numpy(out.astype(np.float32))


#: what :func:`read_wav` accepts: declared sample rates, length and values (frames × channels), checked
#: from the header before reading (10 minutes of 48 kHz stereo is 57.6 M values: 230 MB as float32)
MIN_RATE, MAX_RATE, MAX_SECONDS, MAX_VALUES = 1_000, 384_000, 600, 60_000_000
#: largest sample magnitude accepted (float WAVs at integer scale pass; 3e38 is not audio)
MAX_PEAK = 1e6


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read an audio file (WAV, FLAC, OGG… through soundfile) as mono ``[1, T]`` float at
    ``sample_rate``: channels are averaged and other rates resampled.

    The file's declared rate (:data:`MIN_RATE` … :data:`MAX_RATE` Hz) and length (at most
    :data:`MAX_SECONDS`) are checked from its header before any sample is read, so memory stays
    bounded; samples must be finite and at most :data:`MAX_PEAK` in magnitude.

    Raises:
        AudioFileError: one line naming the file: missing, not a regular file (a FIFO never
            blocks), unreadable, empty, out of bounds, or not finite.
    """
    import soundfile as sf

    from framework.core.files import regular_file

    path = regular_file(path, "audio file", AudioFileError)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError on non-audio content
        raise AudioFileError(f"cannot read audio file {str(path)!r}: {' '.join(str(e).split())}") from None
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise AudioFileError(f"audio file {str(path)!r} declares a sample rate of {info.samplerate:,} Hz; "
                             f"accepted: {MIN_RATE:,} … {MAX_RATE:,} Hz")
    if info.frames > MAX_SECONDS * info.samplerate or info.frames * info.channels > MAX_VALUES:
        raise AudioFileError(f"audio file {str(path)!r} declares {info.frames:,} frames × {info.channels} "
                             f"channels; at most {MAX_SECONDS} s and {MAX_VALUES:,} values are accepted")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, channels]
    except Exception as e:
        raise AudioFileError(f"cannot read audio file {str(path)!r}: {' '.join(str(e).split())}") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"audio file {str(path)!r} holds no samples")
    finite = np.isfinite(data)
    if not finite.all():
        raise AudioFileError(f"audio file {str(path)!r} holds {int((~finite).sum()):,} NaN or infinite "
                             f"samples")
    peak = float(np.abs(data).max())
    if peak > MAX_PEAK:
        raise AudioFileError(f"audio file {str(path)!r} holds samples of magnitude {peak:.3g}, which is not "
                             f"audio (float WAV samples lie in [-1, 1])")
    wave = torch.from_numpy(data.mean(1, dtype=np.float64).astype(np.float32))[None]
    return resample(wave, int(sr), sample_rate)


def save_wav(path: str | Path, wave: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono audio ``[T]`` or ``[1, T]`` in ``[-1, 1]`` as 16-bit PCM WAV (atomically)."""
    import soundfile as sf

    w = wave.detach().cpu().float().reshape(-1).clamp(-1, 1).numpy()
    return atomic_write(path, lambda tmp: sf.write(str(tmp), w, sample_rate, subtype="PCM_16", format="WAV"))
