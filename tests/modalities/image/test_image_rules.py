"""The rule-based check: real renders pass and are read right; known broken images fail for the
reason the rules name."""

import torch

from modalities.image import rules
from modalities.image.shapes import BACKGROUND, RGB, SHAPES, render


def _real(n, seed, **given):
    return render(n, 16, torch.Generator().manual_seed(seed), **given)


def test_real_renders_are_valid_and_read_right():
    b = _real(400, 21)
    valid, shape, color = rules.read_batch(b.images)
    assert bool(valid.all())
    assert (color == b.color).float().mean() == 1.0
    assert (shape == b.shape).float().mean() > 0.95  # small squares are sometimes read as circles
    for k in range(len(SHAPES)):  # every outline is recognised on its own
        one = _real(40, 22 + k, shape=torch.full((40,), k))
        assert (rules.read_batch(one.images)[1] == k).float().mean() > 0.85, SHAPES[k]


def _blank():
    return BACKGROUND[:, None, None].expand(3, 16, 16).clone()


def test_known_broken_images_fail_for_the_right_reason():
    assert rules.read(_blank()).reason == "empty"
    a = _real(2, 23, shape=torch.tensor([0, 1]), position=torch.tensor([0, 3]), scale=torch.tensor([0, 0]))
    two = torch.maximum(a.images[0], a.images[1])  # a circle top left and a square bottom right
    assert rules.read(two).reason == "two or more objects"
    bar = _blank()
    bar[:, 6:10, 2:14] = RGB[2][:, None, None]  # a 4 × 12 bar
    assert rules.read(bar).reason == "stretched"
    ring = _blank()
    ring[:, 3:12, 3:12] = RGB[0][:, None, None]
    ring[:, 6:9, 6:9] = BACKGROUND[:, None, None]
    assert rules.read(ring).reason == "holes"
    two_tone = _blank()
    two_tone[:, 3:12, 3:12] = RGB[0][:, None, None]
    two_tone[:, 3:12, 8:12] = RGB[5][:, None, None]
    assert rules.read(two_tone).reason == "not one solid colour"
    g = torch.Generator().manual_seed(0)
    noisy = _real(1, 24).images[0] + 0.15 * torch.randn(3, 16, 16, generator=g)
    assert not rules.read(noisy.clamp(0, 1)).valid
    speck = _blank()
    speck[:, 7:9, 7:9] = RGB[1][:, None, None]
    assert rules.read(speck).reason == "too small"
    square = _blank()
    square[:, 3:12, 3:12] = RGB[3][:, None, None]
    r = rules.read(square)
    assert r.valid and SHAPES[r.shape] == "square" and r.color == 3
