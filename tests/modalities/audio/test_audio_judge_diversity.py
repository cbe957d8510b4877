"""The audio judge's ``diversity`` is the spread of clips within a request: measured when some
request has two clips, and left out (never NaN) when every clip answers a different request, e.g.
the plugin contract's 4 real clips of 4 different (word, speaker, pitch) requests."""

import math

import torch

from modalities.audio.metrics import AudioClassifier, AudioJudge


def _judge() -> AudioJudge:
    torch.manual_seed(0)
    clf = AudioClassifier({"word": 3}, width=4, features=8)  # untrained: only the features matter here
    real = 0.1 * torch.randn(6, 1, 1600)
    return AudioJudge(clf, (real, {"word": torch.tensor([0, 0, 1, 1, 2, 2])}))


def test_diversity_is_left_out_when_no_request_has_two_clips():
    scores = _judge().evaluate(0.1 * torch.randn(3, 1, 1600), {"word": torch.tensor([0, 1, 2])})
    assert "diversity" not in scores
    assert all(math.isfinite(v) for v in scores.values()), scores


def test_diversity_is_measured_when_a_request_has_two_clips():
    scores = _judge().evaluate(0.1 * torch.randn(3, 1, 1600), {"word": torch.tensor([0, 0, 2])})
    assert math.isfinite(scores["diversity"]) and scores["diversity"] > 0
