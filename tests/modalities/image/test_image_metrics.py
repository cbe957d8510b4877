"""The classifier judge: accurate on real images, blind guesses score at chance, FD is a distance."""

import pytest
import torch

from modalities.image.metrics import ImageJudge, frechet_distance
from modalities.image.shapes import render

LABELS = {"shape": 4, "color": 6, "position": 4}


def _split(n, seed):
    b = render(n, 16, torch.Generator().manual_seed(seed))
    return b.images, {"shape": b.shape, "color": b.color, "position": b.position}


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    torch.manual_seed(0)
    cache = tmp_path_factory.mktemp("j") / "c.pt"
    return ImageJudge(_split(3000, 10), _split(1000, 11), LABELS, cache, epochs=4)


def test_frechet_distance_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + torch.tensor([1.0, 0.0, 0.0])
    # N(0, I) vs N(μ, 4I): |μ|² + tr(I + 4I − 2·2I) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_judge_is_accurate_on_held_out_real_images(judge):
    assert min(judge.real_accuracy.values()) > 0.9, judge.real_accuracy
    images, labels = _split(1000, 12)
    m = judge.evaluate(images, labels)
    assert m["acc_all"] > 0.8 and 0.7 < m["diversity"] < 1.3, m
    # images with their colour channels rotated are plausible pictures, but not this data
    rotated = judge.evaluate(images[:, [1, 2, 0]], labels)
    assert m["fd"] < 0.5 * rotated["fd"], (m["fd"], rotated["fd"])


def test_wrong_requests_score_at_chance_and_noise_is_far(judge):
    images, labels = _split(300, 13)
    shuffled = {k: v.roll(1) for k, v in labels.items()}
    m = judge.evaluate(images, shuffled)
    assert m["acc_color"] < 0.35 and m["acc_all"] < 0.1, m
    noise = judge.evaluate(torch.rand(300, 3, 16, 16), labels)
    assert noise["fd"] > 10 * judge.evaluate(images, labels)["fd"]
    # identical samples have no diversity
    assert judge.evaluate(images[:1].expand(300, -1, -1, -1), labels)["diversity"] < 0.05


def test_judge_is_cached_and_reloaded(judge, tmp_path):
    path = tmp_path / "c.pt"
    first = ImageJudge(_split(500, 10), _split(100, 11), LABELS, path, epochs=1)
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    second = ImageJudge(_split(10, 99), _split(100, 11), LABELS, path, epochs=1)  # loads, does not retrain
    images, labels = _split(50, 14)
    assert first.evaluate(images, labels) == second.evaluate(images, labels)
    with pytest.raises(ValueError, match=r"attributes \['color', 'position', 'shape'\], not \['size'\]"):
        first.evaluate(images, {"size": labels["shape"]})
