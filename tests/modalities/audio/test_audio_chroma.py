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
    with pytest.warns(UserWarning, match="first 4 s are used"):
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
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(ConditionError, match=r"empty\.wav"):
        melody([str(empty)])
    midi = tmp_path / "tune.mid"
    midi.write_bytes(b"MThd not really")
    with pytest.raises(ConditionError, match=r"tune\.mid.*MIDI/MusicXML"):
        melody([str(midi)])
    with pytest.raises(ConditionError, match=r"notes\.wav.*score: \.mid"):  # the hint names scores
        melody([str(bad)])
    with pytest.raises(ConditionError, match="waveform"):
        melody([torch.zeros(3, 3, 3)])


@pytest.mark.fault("audio input")
def test_a_melody_of_any_length_is_cut_or_looped_with_a_notice(tmp_path):
    from modalities.audio.chroma import MelodyLengthWarning

    short = tmp_path / "short.wav"  # E for 2 s: looped to 4 s
    sf.write(short, tone(64, 2.0).numpy(), 16_000)
    with pytest.warns(MelodyLengthWarning, match=r"short\.wav.*2\.00 s.*looped to 4 s"):
        c = melody([str(short)])[0]
    assert (c.argmax(-1) == 4).all()  # the second half is the loop, not silence
    long = tmp_path / "long.wav"  # E for 4 s, then A for 6 s: only the first 4 s are used
    sf.write(long, torch.cat([tone(64, 4.0), tone(69, 6.0)]).numpy(), 16_000)
    with pytest.warns(MelodyLengthWarning, match=r"long\.wav.*10\.00 s.*first 4 s"):
        c = melody([str(long)])[0]
    assert (c[:-2].argmax(-1) == 4).all()
    import warnings

    exact = tmp_path / "exact.wav"
    sf.write(exact, tone(64, 4.0).numpy(), 16_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 4-s melody needs no notice
        melody([str(exact)])


@pytest.mark.parametrize("fmt", ["midi", "musicxml"])
def test_a_midi_or_musicxml_score_is_a_melody(tmp_path, fmt):
    """A score written here by music21 (C D E F, one a second at 60 quarter notes a minute, the
    top line of a two-part score): its chromagram follows the notes in time."""
    from music21 import chord, note, stream, tempo

    from modalities.audio.chroma import MelodyLengthWarning

    melody_part, low = stream.Part(), stream.Part()
    melody_part.append(tempo.MetronomeMark(number=60))
    for name in ("C5", "D5", "E5", "F5", "G5", "A5"):  # 6 s: cut to the first 4 with a notice
        melody_part.append(note.Note(name, quarterLength=1.0))
    low.append(chord.Chord(["C3", "G3"], quarterLength=6.0))  # below the tune: chordify keeps the top
    path = tmp_path / ("tune.mid" if fmt == "midi" else "tune.musicxml")
    stream.Score([melody_part, low]).write(fmt, fp=str(path))
    with pytest.warns(MelodyLengthWarning, match=r"tune\..*6\.00 s.*first 4 s"):
        c = melody([str(path)])[0]
    got = [int(c[4 + 8 * s:8 * s + 7].sum(0).argmax()) for s in range(4)]  # mid-second frames
    assert got == [0, 2, 4, 5]  # C D E F
