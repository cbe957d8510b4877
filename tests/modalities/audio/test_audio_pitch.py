"""Pitch read from the waveform (WORLD's F0 tracker, the cepstral harmonic spacing) and the
``world`` representation, against signals whose pitch is known by construction."""

import math

import numpy as np
import pytest
import torch

from framework.core import plugins
from modalities.audio.features import PEAK_TARGET
from modalities.audio.pitch import f0_error, f0_track, harmonic_spacing
from modalities.audio.world import World

SR = 16_000


def voice(f0: float, seconds: float = 1.0, vibrato: float = 0.0, amp: float = 0.3) -> torch.Tensor:
    """A harmonic tone ``[T]`` with falling overtones and an optional 5-Hz vibrato (± ``vibrato``)."""
    t = torch.arange(int(seconds * SR)) / SR
    f = f0 * (1 + vibrato * torch.sin(2 * math.pi * 5 * t))
    phase = 2 * math.pi * torch.cumsum(f, 0) / SR
    return sum(amp / k * torch.sin(k * phase) for k in range(1, int(3500 / f0)))


def pulses(period: int) -> torch.Tensor:
    x = torch.zeros(SR)
    x[::period] = 0.5
    return x


def test_harmonic_spacing_reads_the_f0_of_a_voice_and_the_rate_of_a_buzz():
    x = torch.stack([voice(110), voice(200), voice(85, vibrato=0.02), pulses(500), pulses(320)])
    got = harmonic_spacing(x[:, None])
    torch.testing.assert_close(got, torch.tensor([110.0, 200.0, 85.0, 32.0, 50.0]), rtol=0.03, atol=0)
    assert torch.isnan(harmonic_spacing(torch.zeros(1, 1, SR))).all()  # silence has no spacing


def test_f0_track_follows_a_voice_and_its_error_is_relative():
    f0 = f0_track(voice(150).numpy())
    assert len(f0) == 201 and np.median(f0[f0 > 0]) == pytest.approx(150, rel=0.01)
    assert f0_error(np.array([100.0, 200, 0]), np.array([110.0, 200, 150])) == pytest.approx(0.05)
    assert math.isnan(f0_error(np.zeros(3), np.ones(3)))
    with pytest.raises(ValueError, match="dio' or 'harvest"):
        f0_track(voice(150).numpy(), method="yin")


def test_world_round_trip_keeps_the_pitch_contour():
    """A gliding voice (vibrato) and a low one, silence after: WORLD features → WORLD synthesis keep
    F0 within 5 % frame by frame, and the silence silent."""
    codec = plugins.get("audio").codec("world")
    assert isinstance(codec, World) and codec.shape == (25, 4 * 43)
    x = torch.zeros(2, 1, SR)
    x[0, 0, :12_000] = voice(180, 0.75, vibrato=0.05)
    x[1, 0, :12_000] = voice(95, 0.75)
    z = codec.encode(x)
    assert z.shape == (2, 25, 172) and bool(z.isfinite().all())
    y = codec.decode(z)
    assert y.shape == (2, 1, SR) and float(y.abs().max()) <= PEAK_TARGET + 1e-6
    for a, b in zip(x, y, strict=True):
        ref, est = f0_track(a[0].numpy()), f0_track(b[0].numpy())
        assert f0_error(ref, est) < 0.05
        assert (est[ref > 0] > 0).mean() > 0.9  # voiced where the input was
    torch.testing.assert_close(harmonic_spacing(y), torch.tensor([180.0, 95.0]), rtol=0.06, atol=0)
    assert float(y[..., 13_000:].abs().max()) < 0.01


def test_world_errors_name_the_shape():
    codec = World()
    with pytest.raises(ValueError, match=r"expected mono audio \[B, 1, 16000\]"):
        codec.encode(torch.zeros(1, 8000))
    with pytest.raises(ValueError, match=r"expected WORLD features \[B, 25, 172\]"):
        codec.decode(torch.zeros(1, 25, 171))
    with pytest.raises(ValueError, match="frames_per_token 3 must divide the 100 frames"):
        World(frames_per_token=3)
