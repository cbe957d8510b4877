"""The ``mel`` representation: log-mel tokens and Griffin-Lim decoding."""

import math

import pytest
import torch

from framework.core import plugins
from modalities.audio.mel import LogMel, griffin_lim


def tone(freq: float, n: int = 16_000, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(n) / 16_000
    return (amp * torch.sin(2 * math.pi * freq * t))[None, None]


def hz_to_mel(f: float) -> float:  # HTK, written out as the oracle
    return 2595 * math.log10(1 + f / 700)


def test_shape_and_range():
    codec = LogMel()
    x = codec.encode(torch.cat([tone(440), torch.zeros(1, 1, 16_000)]))
    assert codec.shape == (32, 128) and x.shape == (2, 32, 128) and codec.vocab_size is None
    assert float(x.max()) <= 1.0 and bool((x[1] == -1).all())  # silence is the floor


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_a_tone_lights_the_mel_band_of_its_frequency(freq):
    codec = LogMel()
    db = codec.db(tone(freq))[0, 10]  # one frame, [n_mels]
    centres = torch.linspace(hz_to_mel(0), hz_to_mel(8000), codec.n_mels + 2)[1:-1]
    expected = int((centres - hz_to_mel(freq)).abs().argmin())
    assert abs(int(db.argmax()) - expected) <= 1


def test_tokens_pack_consecutive_frames():
    codec = LogMel(frames_per_token=2)
    audio = tone(500) * torch.linspace(0, 1, 16_000)  # rising loudness
    db, x = codec.db(audio), codec.encode(audio)
    expected = 2 * (db - codec.floor_db) / (codec.top_db - codec.floor_db) - 1
    assert torch.allclose(x[0, 3, :64], expected[0, 6]) and torch.allclose(x[0, 3, 64:], expected[0, 7])


def test_griffin_lim_recovers_a_consistent_spectrogram():
    audio = tone(440)[:, 0] + tone(1320, amp=0.2)[:, 0]
    window = torch.hann_window(1024)
    mag = torch.stft(audio, 1024, 250, window=window, return_complex=True).abs()
    rebuilt = griffin_lim(mag, 1024, 250, 16_000, iters=32)
    mag2 = torch.stft(rebuilt, 1024, 250, window=window, return_complex=True).abs()
    convergence = float((mag2 - mag).norm() / mag.norm())  # spectral convergence
    random_phase = griffin_lim(mag, 1024, 250, 16_000, iters=0)
    mag0 = torch.stft(random_phase, 1024, 250, window=window, return_complex=True).abs()
    assert convergence < 0.15 < float((mag0 - mag).norm() / mag.norm())


def test_decode_reproduces_the_mel_spectrogram_deterministically():
    codec = LogMel(gl_iters=24)
    noise = 0.15 * torch.randn(1, 1, 16_000, generator=torch.Generator().manual_seed(0))  # peak < 0.89
    audio = noise * (torch.arange(16_000) > 4000)  # noise after silence
    x = codec.encode(audio)
    out = codec.decode(x)
    assert out.shape == (1, 1, 16_000) and torch.equal(out, codec.decode(x))
    loud = x > -0.5
    assert float((codec.encode(out) - x).abs()[loud].mean()) < 0.03
    assert float(out[..., :3000].abs().max()) < 0.05  # the silence stays silent


@pytest.mark.parametrize(("media", "message"), [
    (torch.zeros(2, 16_000), r"expected mono audio \[B, 1, 16000\]"),
    (torch.zeros(2, 2, 16_000), "got \\(2, 2, 16000\\)"),
    (torch.zeros(2, 1, 8000), "at 16000 Hz"),
])
def test_bad_audio_shapes_are_named(media, message):
    with pytest.raises(ValueError, match=message):
        LogMel().encode(media)


def test_bad_arguments_are_plugin_errors():
    audio = plugins.get("audio")
    with pytest.raises(plugins.PluginError, match="hop 333 must divide samples"):
        audio.codec("mel", hop=333)
    with pytest.raises(plugins.PluginError, match="frames_per_token 3 must divide"):
        audio.codec("mel", frames_per_token=3)
    with pytest.raises(ValueError, match=r"expected log-mel tokens \[B, 32, 128\]"):
        LogMel().decode(torch.zeros(1, 64, 64))


def test_four_second_clips():
    codec = LogMel(samples=64_000, frames_per_token=4)
    assert codec.shape == (64, 256) and codec.encode(tone(440, n=64_000)).shape == (1, 64, 256)


def test_decode_controls_the_level_instead_of_cutting_at_full_scale():
    """Tokens 30 dB louder than a 0.9-peak tone (as an over-guided model writes them) decode to the
    same waveform scaled down to the −1 dBFS peak target: no sample at full scale, nothing cut."""
    from modalities.audio.features import PEAK_TARGET, clipped_fraction

    codec = LogMel()
    x = codec.encode(torch.cat([tone(440, amp=0.9), tone(220, amp=0.05)]))
    loud = (x + torch.tensor([0.6, 0.0])[:, None, None]).clamp(max=1.3)  # +30 dB on the first clip
    out = codec.decode(loud)
    assert float(clipped_fraction(out).max()) == 0.0
    assert float(out[0].abs().max()) == pytest.approx(PEAK_TARGET, rel=1e-5)
    # a per-clip gain, not a cut: the decoded shape is Griffin-Lim's, only scaled
    raw = codec.decode_unlimited(loud[:1])[0, 0]
    assert float(raw.abs().max()) > 1.5  # what the decoder used to cut at ±1
    torch.testing.assert_close(out[0, 0], raw * (PEAK_TARGET / raw.abs().max()), atol=1e-5, rtol=0)
    quiet = codec.decode(x[1:])  # a quiet clip keeps its level
    assert 0.02 < float(quiet.abs().max()) < 0.1
