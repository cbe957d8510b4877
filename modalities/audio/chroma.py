"""Chromagrams and the ``melody`` condition encoder (MusicGen-style melody conditioning).

A chromagram folds the short-time power spectrum onto the 12 pitch classes (C, C♯, … B) and
normalises every frame, so it keeps *which notes sound when* and drops timbre, octave and level.
As in MusicGen's melody conditioning, the model is trained on the chromagram of its own clip and,
at sampling time, on the chromagram of any WAV the user gives (``--cond melody=tune.wav``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch

from framework.core.conditions import ConditionError

from .features import SAMPLE_RATE, AudioFileError, as_mono, wave_of

__all__ = ["CHROMA_FRAMES", "CLIP_SECONDS", "PITCH_CLASSES", "SCORE_SUFFIXES", "MelodyLengthWarning",
           "chromagram", "melody", "score_wave"]

#: melody files read as scores (parsed by music21, rendered with the SoundFont piano)
SCORE_SUFFIXES = (".mid", ".midi", ".musicxml", ".mxl", ".xml")
DEFAULT_BPM = 100.0  # a score without a metronome mark is played at 100 quarter notes a minute


class MelodyLengthWarning(UserWarning):
    """A melody that is not exactly one clip long: cut to its first 4 s, or looped to 4 s."""

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


def score_wave(path: str | Path, seconds: float = CLIP_SECONDS) -> tuple[torch.Tensor, float]:
    """A MIDI or MusicXML file → its top line rendered with the SoundFont piano, at most
    ``seconds`` long, ``[T]`` at 16 kHz, and the score's full length in seconds.

    The score is parsed by music21 (data only: no code in the file runs), chords are reduced to
    their top note (``chordify``), and it plays at its first metronome mark (else 100 quarter
    notes a minute). Errors name the file (:class:`~.features.AudioFileError`)."""
    from music21 import converter, tempo

    from .music import _notes_of, render

    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"melody score {str(path)!r} does not exist")
    try:
        score = converter.parse(str(path))
        notes = _notes_of(score.chordify())
        marks = list(score.flatten().getElementsByClass(tempo.MetronomeMark))
        bpm = float(marks[0].getQuarterBPM()) if marks and marks[0].getQuarterBPM() else DEFAULT_BPM
    except Exception as e:  # music21 raises many kinds on malformed files
        raise AudioFileError(f"cannot read melody score {str(path)!r} as MIDI/MusicXML: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if len(notes) == 0:
        raise AudioFileError(f"melody score {str(path)!r} has no notes")
    sec_per_q = 60.0 / bpm
    start = float(notes[0, 0])
    length = float((notes[:, 0] + notes[:, 1]).max() - start) * sec_per_q
    timed = [((float(o) - start) * sec_per_q, float(d) * sec_per_q, int(k)) for o, d, k in notes
             if (float(o) - start) * sec_per_q < seconds]
    wave = render(timed, "piano", seconds=min(length, seconds))
    return torch.from_numpy(wave), length


def _clip(value: str | Path | torch.Tensor, samples: int) -> torch.Tensor:
    """One melody source → a 16-kHz mono waveform ``[samples]``: a longer one is cut to its first
    ``CLIP_SECONDS``, a shorter one looped, each with a :class:`MelodyLengthWarning`."""
    length = None
    if isinstance(value, (str, Path)) and Path(value).suffix.lower() in SCORE_SUFFIXES:
        wave, length = score_wave(value, samples / SAMPLE_RATE)
        where = f"melody score {str(value)!r}"
    else:
        wave = wave_of(value, "melody", f"a melody is an audio file — WAV, FLAC, OGG — or a score: "
                                        f"{', '.join(SCORE_SUFFIXES)}")
        where = f"melody file {str(value)!r}" if isinstance(value, (str, Path)) else "melody waveform"
    if wave.shape[0] == 0:
        raise ConditionError(f"{where} holds no samples")
    seconds = length if length is not None else wave.shape[0] / SAMPLE_RATE
    if wave.shape[0] > samples or (length is not None and length > CLIP_SECONDS):
        warnings.warn(f"{where} lasts {seconds:.2f} s; its first {CLIP_SECONDS:g} s are used",
                      MelodyLengthWarning, stacklevel=3)
    elif wave.shape[0] < samples:
        warnings.warn(f"{where} lasts {seconds:.2f} s; it is looped to {CLIP_SECONDS:g} s",
                      MelodyLengthWarning, stacklevel=3)
        wave = wave.repeat(-(-samples // wave.shape[0]))
    return wave[:samples]


def melody(values: Sequence[str | Path | torch.Tensor]) -> torch.Tensor:
    """The ``melody`` condition encoder: melodies → chromagrams ``[n, CHROMA_FRAMES, 12]``.

    Each value is a path to an audio file (WAV/FLAC/OGG at any sample rate, stereo mixed down), a
    MIDI or MusicXML score (:data:`SCORE_SUFFIXES`, rendered by :func:`score_wave`) or a waveform
    ``[T]`` at 16 kHz. A melody longer than 4 s is cut to its first 4 s, a shorter one looped to
    4 s, each with a :class:`MelodyLengthWarning` naming it. An unreadable or empty file raises
    :class:`~framework.core.conditions.ConditionError` naming it.
    """
    samples = int(CLIP_SECONDS * SAMPLE_RATE)
    return chromagram(torch.stack([_clip(v, samples) for v in values]))
