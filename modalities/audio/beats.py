"""Music features at a motion frame rate: onset envelope, beats, tempo and chroma — encoders that
another modality (dance: :mod:`modalities.motion.dance`) declares in its condition specs.

Every feature is computed from the waveform alone (no score), so a user's WAV and a rendered
training clip go through the same code:

* **onset envelope** — spectral flux (positive change of the log-magnitude spectrum, summed over
  frequency) at 100 frames a second, max-pooled to the motion frame rate and scaled to a peak of 1;
* **tempo** — the lag (60–180 BPM) that maximises the autocorrelation of the 100-fps envelope,
  weighted by a log-normal prior centred at 110 BPM (as librosa's ``beat_track`` does);
* **beats** — the phase of a comb at that period that collects the most onset energy: beat
  times ``phase + k · period``;
* **chroma** — :func:`~modalities.audio.chroma.chromagram` with one frame per motion frame.

Registered encoders (``"audio/<name>"`` in a condition spec; each takes audio files — WAV, FLAC,
OGG at any rate — or 16-kHz waveforms ``[T]``; the first ``frames / fps`` seconds are used, a
shorter clip is padded with silence):

=================  ==================  ========================================================
``audio/onsets``   ``[n, 64, 1]``      onset envelope
``audio/beats``    ``[n, 64, 5]``      onset, beat pulse, cos/sin of the beat phase, tempo
``audio/music``    ``[n, 64, 17]``     the five of ``beats`` and 12 chroma values
=================  ==================  ========================================================

All at :data:`FPS` = 20 frames a second over :data:`FRAMES` = 64 frames (3.2 s, one motion clip).
The waveform an encoder read is kept (:func:`source_of`) so a writer can store the music cut
to the clip next to the motion it conditioned.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from framework.core.conditions import ConditionError

from .chroma import chromagram
from .features import SAMPLE_RATE, wave_of

__all__ = ["BEAT_DIM", "FPS", "FRAMES", "MUSIC_DIM", "Beats", "beat_features", "beats_encoder",
           "estimate_beats", "load_music", "music_encoder", "music_features", "onset_envelope",
           "onsets_encoder", "source_of"]

FPS = 20  # the motion frame rate
FRAMES = 64  # one motion clip: 3.2 s
ENVELOPE_FPS = 100  # onset envelope resolution before pooling to FPS
N_FFT = 1024
BPM_RANGE = (60.0, 180.0)
PRIOR_BPM, PRIOR_OCTAVES = 110.0, 1.0  # log-normal tempo prior: centre and width (octaves)
TEMPO_SCALE = 120.0  # the tempo feature is bpm / 120
BEAT_WIDTH = 1.0  # frames: the beat pulse's Gaussian width
BEAT_DIM = 5
MUSIC_DIM = BEAT_DIM + 12


@dataclass(frozen=True)
class Beats:
    """Beat grid of one clip: ``period`` and ``phase`` in seconds (beats at ``phase + k · period``)."""

    period: float
    phase: float

    @property
    def bpm(self) -> float:
        return 60.0 / self.period

    def times(self, seconds: float) -> torch.Tensor:
        """Beat times ``[K]`` (seconds) within ``[0, seconds)``."""
        k = torch.arange(0, math.ceil(seconds / self.period) + 1, dtype=torch.float64)
        t = self.phase + k * self.period
        return t[t < seconds].float()


def onset_envelope(wave: torch.Tensor, fps: int = ENVELOPE_FPS) -> torch.Tensor:
    """Spectral-flux onset strength ``[B, frames]`` at ``fps`` of mono audio ``[B, T]`` at 16 kHz
    (frame ``i`` is the flux into the window centred at ``i / fps`` s; frame 0 is 0)."""
    hop = SAMPLE_RATE // fps
    spec = torch.stft(wave.float(), N_FFT, hop_length=hop, window=torch.hann_window(N_FFT),
                      center=True, pad_mode="constant", return_complex=True).abs()  # [B, F, frames]
    logmag = torch.log1p(100.0 * spec)
    flux = (logmag[..., 1:] - logmag[..., :-1]).clamp_min(0).sum(1)
    return torch.cat([torch.zeros_like(flux[:, :1]), flux], 1)


def estimate_beats(envelope: torch.Tensor, fps: int = ENVELOPE_FPS) -> Beats:
    """Tempo and beat phase of one onset envelope ``[frames]`` (module docstring)."""
    env = envelope.double() - envelope.double().mean()
    n = env.shape[0]
    lo, hi = max(1, round(60 * fps / BPM_RANGE[1])), min(n - 1, round(60 * fps / BPM_RANGE[0]))
    lags = torch.arange(lo, hi + 1)
    if len(lags) == 0 or float(envelope.abs().sum()) == 0.0:
        return Beats(60.0 / PRIOR_BPM, 0.0)
    ac = torch.stack([(env[lag:] * env[:-lag]).sum() / (n - lag) for lag in lags.tolist()])
    bpm = 60.0 * fps / lags.double()
    prior = torch.exp(-0.5 * (torch.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    lag = int(lags[int(torch.argmax(ac.clamp_min(0) * prior))])
    # refine the period to sub-frame accuracy around the chosen lag (parabolic peak)
    period = float(lag)
    i = int((lags == lag).nonzero()[0])
    if 0 < i < len(ac) - 1:
        a, b, c = float(ac[i - 1]), float(ac[i]), float(ac[i + 1])
        denom = a - 2 * b + c
        if denom < 0:
            period += 0.5 * (a - c) / denom
    raw = envelope.double()
    best, phase = -1.0, 0.0
    for p in torch.arange(0, period, 0.25).tolist():  # comb over quarter-frame phases
        idx = torch.arange(p, n, period).round().long().clamp(max=n - 1)
        score = float(raw[idx].mean())
        if score > best:
            best, phase = score, p
    return Beats(period / fps, phase / fps)


def _pool(envelope: torch.Tensor, frames: int, fps: int) -> torch.Tensor:
    """Max-pool a 100-fps envelope ``[B, N]`` to ``frames`` frames at ``fps`` (``[B, frames]``)."""
    k = ENVELOPE_FPS // fps
    need = frames * k
    env = torch.nn.functional.pad(envelope, (k // 2, max(0, need + k - envelope.shape[1])))[:, :need]
    return env.reshape(env.shape[0], frames, k).amax(-1)


def beat_features(wave: torch.Tensor, frames: int = FRAMES, fps: int = FPS) -> torch.Tensor:
    """``[B, frames, 5]`` per frame: onset envelope (peak 1), beat pulse (a Gaussian of
    :data:`BEAT_WIDTH` frames at each estimated beat), cos and sin of the beat phase (cos = 1 on a
    beat) and the tempo (bpm / 120) of mono 16-kHz audio ``[B, T]``."""
    env = onset_envelope(wave)
    pooled = _pool(env, frames, fps)
    pooled = pooled / pooled.amax(1, keepdim=True).clamp_min(1e-8)
    t = torch.arange(frames, dtype=torch.float32) / fps
    rows = []
    for b in range(wave.shape[0]):
        beats = estimate_beats(env[b, : round(frames / fps * ENVELOPE_FPS)])
        phase = 2 * math.pi * (t - beats.phase) / beats.period
        bt = beats.times(frames / fps + beats.period)
        dist = (t[:, None] - bt[None, :]).abs().amin(1) * fps
        pulse = torch.exp(-0.5 * (dist / BEAT_WIDTH) ** 2)
        tempo = torch.full_like(t, beats.bpm / TEMPO_SCALE)
        rows.append(torch.stack([pooled[b], pulse, torch.cos(phase), torch.sin(phase), tempo], -1))
    return torch.stack(rows)


def music_features(wave: torch.Tensor, frames: int = FRAMES, fps: int = FPS) -> torch.Tensor:
    """``[B, frames, 17]``: :func:`beat_features` and the chromagram at ``fps`` of audio ``[B, T]``."""
    need = round(frames / fps * SAMPLE_RATE)
    chroma = chromagram(wave[:, :need], frames=frames)
    return torch.cat([beat_features(wave, frames, fps), chroma], -1)


# ------------------------------------------------------------------ encoders and their sources
_SOURCES: OrderedDict[str, torch.Tensor] = OrderedDict()
_KEEP = 64  # waveforms remembered for writers


def _key(features: torch.Tensor) -> str:
    return hashlib.sha1(features.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def source_of(features: torch.Tensor) -> torch.Tensor | None:
    """The clip ``[T]`` (16 kHz, cut to the motion clip) an encoder in this process turned into
    ``features`` (one sample ``[frames, D]``), or ``None`` if none did (e.g. a tensor given)."""
    return _SOURCES.get(_key(features))


def load_music(value: str | Path | torch.Tensor, seconds: float = FRAMES / FPS) -> torch.Tensor:
    """A music source (audio file path or 16-kHz waveform ``[T]``) → mono ``[seconds · 16000]``:
    longer audio is cut, shorter padded with silence. Errors name the file or the shape."""
    samples = round(seconds * SAMPLE_RATE)
    wave = wave_of(value, "music", "music is an audio file: WAV, FLAC or OGG")
    if wave.shape[0] == 0 or float(wave.abs().max()) == 0.0:
        raise ConditionError(f"music {value if isinstance(value, (str, Path)) else 'waveform'} is silent "
                             f"or empty: there are no beats to dance to")
    return torch.nn.functional.pad(wave[:samples], (0, max(0, samples - wave.shape[0])))


def _encode(values: Sequence[Any], fn) -> torch.Tensor:
    waves = torch.stack([load_music(v) for v in values])
    feats = fn(waves)
    for w, f in zip(waves, feats, strict=True):
        _SOURCES[_key(f)] = w
        _SOURCES.move_to_end(_key(f))
        while len(_SOURCES) > _KEEP:
            _SOURCES.popitem(last=False)
    return feats


def onsets_encoder(values: Sequence[Any]) -> torch.Tensor:
    """The ``audio/onsets`` encoder: music → onset envelope ``[n, 64, 1]`` at 20 fps."""
    return _encode(values, lambda w: beat_features(w)[..., :1])


def beats_encoder(values: Sequence[Any]) -> torch.Tensor:
    """The ``audio/beats`` encoder: music → ``[n, 64, 5]`` (:func:`beat_features`) at 20 fps."""
    return _encode(values, beat_features)


def music_encoder(values: Sequence[Any]) -> torch.Tensor:
    """The ``audio/music`` encoder: music → ``[n, 64, 17]`` (:func:`music_features`) at 20 fps."""
    return _encode(values, music_features)
