"""Music features at the motion frame rate (modalities/audio/beats.py): tempo and beats found in
rendered music, the registered encoders' shapes and errors, and the waveform kept for writers."""

import numpy as np
import pytest
import torch

from framework.core import plugins
from framework.core.conditions import ConditionError
from modalities.audio.beats import FPS, FRAMES, beat_features, estimate_beats, onset_envelope, source_of
from modalities.audio.features import SAMPLE_RATE, AudioFileError, save_wav
from modalities.audio.music import render


def _notes(bpm: float, offset: float, seconds: float = 3.2) -> list[tuple[float, float, int]]:
    period = 60.0 / bpm
    out, t, k = [], offset, 0
    while t < seconds:
        out.append((t, period, 60 + (k * 5) % 12))
        t, k = t + period, k + 1
    return out


@pytest.mark.parametrize("bpm,offset", [(84.0, 0.1), (120.0, 0.0), (143.0, 0.27)])
def test_tempo_and_beats_of_rendered_piano(bpm, offset):
    wave = torch.from_numpy(render(_notes(bpm, offset), "piano", 3.2))
    beats = estimate_beats(onset_envelope(wave[None])[0])
    assert abs(beats.bpm - bpm) / bpm < 0.04, beats
    truth = offset + np.arange(0, 8) * 60.0 / bpm
    found = beats.times(3.2).numpy()
    err = np.abs(found[:, None] - truth[None, truth < 3.2]).min(1)
    assert np.median(err) < 1.0 / FPS, (found, truth)


def test_features_mark_the_beats_on_the_motion_frame_rate():
    wave = torch.from_numpy(render(_notes(100.0, 0.3), "guitar", 3.2))
    f = beat_features(wave[None])
    assert f.shape == (1, FRAMES, 5)
    beat_frames = np.round((0.3 + np.arange(5) * 0.6) * FPS).astype(int)
    assert float(f[0, beat_frames, 1].mean()) > 0.6  # the pulse is high on the score's beats
    assert float(f[0, beat_frames, 0].mean()) > 3 * float(f[0, :, 0].mean()) * 0.5  # onsets there
    assert abs(float(f[0, 0, 4]) * 120 - 100.0) < 4


def test_encoders_registered_by_name_with_their_shapes_and_errors(tmp_path):
    enc = plugins.get("audio").encoders
    assert {"onsets", "beats", "music"} <= set(enc)
    wav = save_wav(tmp_path / "song.wav", torch.from_numpy(render(_notes(110.0, 0.0, 5.0), "flute", 5.0)))
    short = torch.from_numpy(render(_notes(110.0, 0.0, 1.0), "flute", 1.0))
    assert enc["onsets"]([str(wav)]).shape == (1, 64, 1)
    assert enc["beats"]([str(wav), short]).shape == (2, 64, 5)
    music = enc["music"]([str(wav)])
    assert music.shape == (1, 64, 17)
    kept = source_of(music[0])  # the writer's music: the file cut to the clip
    assert kept is not None and kept.shape == (round(3.2 * SAMPLE_RATE),)
    assert source_of(music[0] + 1) is None
    with pytest.raises(ConditionError, match="silent"):
        enc["music"]([torch.zeros(SAMPLE_RATE)])
    with pytest.raises(AudioFileError, match=r"nothere\.wav"):
        enc["music"]([str(tmp_path / "nothere.wav")])
