"""Audio judges (log-mel CNN), speaker similarity, melody similarity and codec figures."""

import math

import pytest
import torch

from modalities.audio import metrics
from modalities.audio.chroma import chromagram
from modalities.audio.metrics import (
    AudioJudge,
    cached_classifier,
    mel_distance,
    melody_similarity,
    si_snr,
    speaker_embed,
    train_classifier,
)

SR = 16_000


def toy_clips(n: int, seed: int, seconds: float = 0.5) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Tones whose pitch (``pitch``: 3 classes) and timbre (``shape``: sine vs square) are labels."""
    g = torch.Generator().manual_seed(seed)
    pitch = torch.arange(n) % 3
    shape = torch.randperm(n, generator=g) % 2
    t = torch.arange(int(seconds * SR)) / SR
    f = torch.tensor([220.0, 440.0, 880.0])[pitch] * (1 + 0.03 * torch.randn(n, generator=g))
    phase = 2 * math.pi * f[:, None] * t
    wave = torch.where(shape[:, None] == 0, torch.sin(phase), torch.sign(torch.sin(phase)) * 0.5)
    wave = wave * (0.2 + 0.3 * torch.rand(n, 1, generator=g))
    return wave[:, None], {"pitch": pitch, "shape": shape}


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    cache = tmp_path_factory.mktemp("judge") / "judge.pt"
    clf = cached_classifier(cache, {"pitch": 3, "shape": 2}, toy_clips(96, 0), epochs=6, batch_size=16,
                             width=8)
    return cache, clf, AudioJudge(clf, toy_clips(48, 1))


def test_si_snr_matches_the_added_noise_level():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(4, 1, 16_000, generator=g)
    noise = torch.randn(4, 1, 16_000, generator=g)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.square().sum(-1, keepdim=True) * ref  # ⟂ ref
    for db in (0.0, 10.0, 20.0):
        scale = ref.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True) * 10 ** (-db / 20)
        est = ref + noise * scale
        torch.testing.assert_close(si_snr(est, ref), torch.full((4,), db), atol=0.05, rtol=0)
    assert (si_snr(3 * ref, ref) > 60).all()  # scale-invariant
    with pytest.raises(ValueError, match="differ in shape"):
        si_snr(ref[..., :100], ref)


def test_mel_distance_is_zero_only_for_the_same_audio():
    wave, _ = toy_clips(4, 0)
    assert mel_distance(wave, wave).abs().max() == 0
    d = mel_distance(wave, wave.flip(0))
    assert (d > 1).all()
    # louder by 6 dB shifts every (unfloored) bin by 6 dB
    torch.testing.assert_close(mel_distance(2 * wave, wave), torch.full((4,), 20 * math.log10(2)),
                               atol=0.1, rtol=0)


def test_judge_learns_real_labels_and_scores_held_out_clips(judged):
    judge = judged[2]
    assert judge.real_accuracy["pitch"] >= 0.9 and judge.real_accuracy["shape"] >= 0.9
    held, labels = toy_clips(48, 1)
    scores = judge.evaluate(held, labels)
    assert scores["acc_pitch"] == pytest.approx(judge.real_accuracy["pitch"])
    assert scores["fd"] == pytest.approx(0.0, abs=1e-3)  # the real clips themselves
    assert scores["diversity"] == pytest.approx(1.0)
    wrong = {"pitch": (labels["pitch"] + 1) % 3, "shape": labels["shape"]}
    bad = judge.evaluate(held, wrong)
    assert bad["acc_pitch"] <= 0.1 and bad["acc_all"] <= 0.1
    silence = judge.evaluate(torch.zeros(48, 1, 8000), labels)
    assert silence["fd"] > 1.0 and silence["diversity"] == pytest.approx(0.0)
    assert scores["clipped"] == 0.0 and scores["clipped_max"] == 0.0


def test_judge_reports_the_fraction_of_samples_at_full_scale(judged):
    held, labels = toy_clips(4, 1)
    loud = held.clone()
    loud[0, 0, :80] = 1.0  # 80 samples at full scale
    loud[1, 0, :8] = -1.3  # beyond it (as an undecoded model output): counted too
    scores = judged[2].evaluate(loud, labels)
    n = held.shape[-1]
    assert scores["clipped_max"] == pytest.approx(80 / n)
    assert scores["clipped"] == pytest.approx((80 + 8) / n / 4)


def test_cached_judge_reloads_without_training(judged, monkeypatch):
    cache, clf, _ = judged
    monkeypatch.setattr(metrics, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    again = cached_classifier(cache, {"pitch": 3, "shape": 2}, (None, None), width=8)
    x, _ = toy_clips(8, 5)
    with torch.no_grad():
        torch.testing.assert_close(again(x)["pitch"], clf(x)["pitch"])
    with pytest.raises(ValueError, match=r"judge\.pt.*does not fit"):
        cached_classifier(cache, {"pitch": 4}, (None, None), width=8)


@pytest.mark.fault("audio input")
def test_judge_rejects_unknown_attributes(judged):
    with pytest.raises(ValueError, match="not \\['word'\\]"):
        judged[2].evaluate(torch.zeros(2, 1, 8000), {"word": torch.zeros(2, dtype=torch.long)})
    with pytest.raises(ValueError, match="labels lack heads"):
        train_classifier(torch.zeros(4, 1, 800), {"a": torch.zeros(4)}, {"a": 2, "b": 2})


def test_melody_similarity_prefers_the_requested_tune():
    t = torch.arange(SR // 2) / SR

    def tune(keys: list[int]) -> torch.Tensor:  # half a second per note, [1, 1, 64000]
        notes = [0.3 * torch.sin(2 * math.pi * 440 * 2 ** ((k - 69) / 12) * t) for k in keys]
        return torch.cat(notes)[None, None]

    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    want = chromagram(tune(scale))
    assert melody_similarity(want, tune(scale)).item() == pytest.approx(1.0, abs=1e-4)
    assert melody_similarity(want, 0.1 * tune(scale)).item() == pytest.approx(1.0, abs=1e-4)  # level-free
    assert melody_similarity(want, tune([k + 6 for k in scale])).item() < 0.2  # a tritone away
    assert melody_similarity(want, tune([k + 12 for k in scale])).item() > 0.9  # octaves fold together


def test_speaker_embeddings_from_the_shipped_encoder():
    t = torch.arange(SR) / SR
    voice_a = torch.sin(2 * math.pi * 140 * t) * (1 + torch.sin(2 * math.pi * 3 * t)) * 0.3
    voice_b = torch.sign(torch.sin(2 * math.pi * 300 * t)) * 0.2 * (1 + torch.sin(2 * math.pi * 5 * t))
    emb = speaker_embed(torch.stack([voice_a, voice_a, voice_b])[:, None])
    assert emb.shape == (3, 256)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3), atol=1e-4, rtol=0)
    assert (emb[0] @ emb[1]).item() == pytest.approx(1.0, abs=1e-5)
    assert (emb[0] @ emb[2]).item() < 0.99


def test_a_judge_can_read_coarser_log_mels_and_reloads_with_them(tmp_path, monkeypatch):
    """``n_fft``/``hop`` set the classifier's front end (the music judge's ``coarse`` form reads
    the music model's 2048-point, 31-ms-hop log-mels); the cache reloads with the same front end."""
    cache = tmp_path / "coarse.pt"
    kw = {"n_fft": 2048, "hop": 500, "n_mels": 32, "width": 8}
    clf = cached_classifier(cache, {"pitch": 3, "shape": 2}, toy_clips(96, 0), epochs=6, batch_size=16, **kw)
    x, labels = toy_clips(48, 1)
    assert clf.spectrogram(x).shape == (48, 1, 32, x.shape[-1] // 500 + 1)
    assert AudioJudge(clf, (x, labels)).real_accuracy["pitch"] >= 0.9
    monkeypatch.setattr(metrics, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    again = cached_classifier(cache, {"pitch": 3, "shape": 2}, (None, None), **kw)
    with torch.no_grad():
        torch.testing.assert_close(again(x)["pitch"], clf(x)["pitch"])
