"""Chromagrams and the melody condition encoder, against note frequencies as the oracle."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from framework.core.conditions import ConditionError
from modalities.audio.chroma import CHROMA_FRAMES, PITCH_CLASSES, chromagram, melody

SR = 16_000


def tone(midi: float, seconds: float, sr: int = SR, harmonics: int = 3) -> torch.Tensor:
    """A harmonic tone ``[seconds · sr]`` at a MIDI pitch (decaying overtones)."""
    t = torch.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(0.3 / k * torch.sin(2 * math.pi * k * f * t) for k in range(1, harmonics + 1))


def test_pure_tones_land_on_their_pitch_class():
    for midi in (57, 60, 64, 67, 70, 83):  # A3, C4, E4, G4, A#4, B5
        c = chromagram(tone(midi, 4.0)[None, None])
        assert c.shape == (1, CHROMA_FRAMES, 12)
        assert (c[0].argmax(-1) == midi % 12).all(), PITCH_CLASSES[midi % 12]


def test_frames_follow_a_melody_in_time_and_are_unit_norm():
    notes = [60, 62, 64, 65, 67, 69, 71, 72]  # C major scale, half a second each
    wave = torch.cat([tone(m, 0.5) for m in notes])[None, None]
    c = chromagram(wave)[0]
    torch.testing.assert_close(c.norm(dim=-1), torch.ones(CHROMA_FRAMES))
    want = torch.tensor([notes[i // 4] % 12 for i in range(CHROMA_FRAMES)])
    inner = torch.tensor([i % 4 not in (0,) for i in range(CHROMA_FRAMES)])  # skip frames at note changes
    assert (c.argmax(-1)[inner] == want[inner]).all()


def test_silence_gives_zero_frames():
    wave = torch.zeros(1, 1, 64000)
    wave[..., 32000:] = tone(69, 2.0)
    c = chromagram(wave)[0]
    assert c[:15].abs().sum() == 0
    assert (c[17:].argmax(-1) == 9).all()


@pytest.mark.fault("audio input")
def test_melody_encoder_reads_any_rate_and_channels(tmp_path):
    mono16 = tone(64, 4.0)
    t = np.arange(int(4.5 * 44_100)) / 44_100
    wave = 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((64 - 69) / 12) * t)
    stereo = np.stack([wave, 0.5 * wave], 1)  # 44.1 kHz stereo, longer than 4 s
    path = tmp_path / "tune.wav"
    sf.write(path, stereo, 44_100)
    from_file = melody([str(path)])
    from_tensor = melody([mono16])
    assert from_file.shape == from_tensor.shape == (1, CHROMA_FRAMES, 12)
    assert (from_file[0].argmax(-1) == 4).all()
    cos = torch.nn.functional.cosine_similarity(from_file, from_tensor, dim=-1)
    assert cos.min() > 0.95


@pytest.mark.fault("audio input")
def test_melody_errors_name_the_file(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(ConditionError, match=r"notes\.wav"):
        melody([str(bad)])
    with pytest.raises(ConditionError, match=r"missing\.wav"):
        melody([str(tmp_path / "missing.wav")])
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(16_000 * 2, dtype=np.float32), 16_000)
    with pytest.raises(ConditionError, match=r"short\.wav.*2\.00 s.*at least 4 s"):
        melody([str(short)])
    with pytest.raises(ConditionError, match="waveform"):
        melody([torch.zeros(3, 3, 3)])
