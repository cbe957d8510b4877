"""Pitch measured from the waveform: WORLD's F0 tracker and the cepstral harmonic spacing.

Two measurements that do not depend on any model of ours:

* :func:`f0_track` — the fundamental frequency per 5-ms frame from the WORLD vocoder's trackers
  (``pyworld``: DIO, refined by StoneMask, or Harvest), 0 where unvoiced;
* :func:`harmonic_spacing` — the spacing of the harmonics in a clip's spectrum: per voiced frame,
  the peak of the real cepstrum (the periodicity of the log-magnitude spectrum, 2048-point
  frames), searched from 25 to 400 Hz; the clip's value is the median over its voiced frames.
  A voice has its own F0 here (about 70–130 Hz for eSpeak's male voices, 165–210 Hz female);
  a decoder that imposes its frame rate shows that rate instead (the mel decoder's 64 Hz, its
  32-Hz token rate, the codec's 50 Hz).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .features import SAMPLE_RATE, as_mono

__all__ = ["f0_error", "f0_track", "harmonic_spacing", "pyworld"]


def pyworld():
    """The ``pyworld`` module (WORLD vocoder), imported without its ``pkg_resources`` warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pyworld as pw
    return pw


def f0_track(wave: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE, *, method: str = "dio",
             f0_floor: float = 60.0, f0_ceil: float = 500.0, frame_period: float = 5.0) -> np.ndarray:
    """F0 in Hz ``[frames]`` of one clip ``[T]`` (``frame_period`` ms frames; 0 = unvoiced), by
    WORLD's DIO + StoneMask (``method="dio"``) or Harvest (``"harvest"``)."""
    pw = pyworld()
    x = np.ascontiguousarray(np.asarray(wave, dtype=np.float64).reshape(-1))
    if method == "harvest":
        return pw.harvest(x, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)[0]
    if method != "dio":
        raise ValueError(f"method must be 'dio' or 'harvest', got {method!r}")
    f0, t = pw.dio(x, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)
    return pw.stonemask(x, f0, t, sample_rate)


def f0_error(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Median relative F0 error ``|f̂ / f − 1|`` over frames voiced in both tracks (NaN if none)."""
    n = min(len(reference), len(estimate))
    r, e = reference[:n], estimate[:n]
    both = (r > 0) & (e > 0)
    return float(np.median(np.abs(e[both] / r[both] - 1))) if both.any() else float("nan")


def harmonic_spacing(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, *, f_min: float = 25.0,
                     f_max: float = 400.0, n_fft: int = 2048, hop: int = 256,
                     voiced_db: float = 25.0) -> torch.Tensor:
    """Median harmonic spacing in Hz ``[B]`` of audio ``[B, (1,) T]`` (NaN for a silent clip).

    Frames within ``voiced_db`` of the clip's loudest frame are analysed; the real cepstrum of
    each (the inverse FFT of its log magnitude, Hann window ``n_fft``) peaks at the quefrency
    ``1 / spacing``, searched for spacings in ``[f_min, f_max]``; the clip's value is the median.
    """
    x = as_mono(wave).float()
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True).abs()
    energy = 10 * torch.log10(spec.square().sum(1).clamp_min(1e-12))  # [B, T]
    ceps = torch.fft.irfft(torch.log(spec.clamp_min(1e-7)), n=n_fft, dim=1)  # [B, n_fft, T]
    lo, hi = int(sample_rate / f_max), int(np.ceil(sample_rate / f_min))
    out = []
    for b in range(x.shape[0]):
        frames = energy[b] > energy[b].amax() - voiced_db
        if energy[b].amax() < -60:
            out.append(float("nan"))
            continue
        q = lo + ceps[b, lo:hi + 1][:, frames].argmax(0)  # [t] quefrency in samples
        out.append(float((sample_rate / q.float()).median()))
    return torch.tensor(out)
