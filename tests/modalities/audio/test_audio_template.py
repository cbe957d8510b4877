"""The independent word check: DTW over MFCCs against reference clips (no training)."""

import math

import torch

from modalities.audio.template import TemplateMatcher, mfcc_sequence

SR = 16_000


def word(kind: int, speed: float, f0: float, onset: float) -> torch.Tensor:
    """A toy "word" ``[SR]``: a harmonic tone whose vowel (a formant-like band) moves up (0), down
    (1) or stays (2), said at ``speed`` with pitch ``f0`` after ``onset`` s of silence."""
    n = int(0.4 * SR / speed)
    t = torch.arange(n) / SR
    frac = t / t[-1]
    centre = {0: 500 + 1500 * frac, 1: 2000 - 1500 * frac, 2: torch.full_like(t, 1200.0)}[kind]
    phase = 2 * math.pi * f0 * t
    tone = sum(torch.exp(-((k * f0 - centre) / 300) ** 2) * torch.sin(k * phase)
               for k in range(1, int(4000 / f0)))
    out = torch.zeros(SR)
    start = int(onset * SR)
    out[start:start + n] = 0.3 * tone / tone.abs().max()
    return out


def test_words_are_recognised_across_speed_pitch_and_position():
    refs, labels = [], []
    for kind in range(3):
        for speed, f0 in ((0.8, 110), (1.0, 180), (1.2, 140)):
            refs.append(word(kind, speed, f0, 0.1))
            labels.append(kind)
    matcher = TemplateMatcher(torch.stack(refs)[:, None], torch.tensor(labels), k=2)
    queries = torch.stack([word(k, s, f, o) for k, s, f, o in
                           ((0, 0.9, 125, 0.4), (1, 1.1, 200, 0.2), (2, 0.7, 95, 0.3), (1, 0.85, 150, 0.05))])
    assert matcher.predict(queries[:, None]).tolist() == [0, 1, 2, 1]


def test_mfcc_sequence_keeps_only_the_loud_frames():
    x = word(0, 1.0, 150, 0.5)  # 0.4 s of sound in 1 s
    m = mfcc_sequence(x.numpy())
    assert m.shape[0] == 13 and 35 <= m.shape[1] <= 45  # 10-ms frames over the word only
    assert abs(float(m.mean())) < 1e-4  # cepstral mean removed
