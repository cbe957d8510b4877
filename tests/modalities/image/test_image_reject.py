"""The shapes judge can refuse: its reject class (trained on rendered failure modes, shipped as
``reject-classifier-shapes16.pt``) refuses each failure mode and accepts real renders, and
``evaluate`` counts accuracy on the samples it accepts."""

from pathlib import Path

import pytest
import torch

from modalities.image import failures
from modalities.image.data import shapes_specs
from modalities.image.judges import shapes_or_digits_judge
from modalities.image.shapes import render

SHIPPED = Path(__file__).resolve().parents[3] / "recipes/image/checkpoints"


@pytest.fixture(scope="module")
def judge():
    return shapes_or_digits_judge(shapes_specs(), 16, SHIPPED)


def test_every_rendered_failure_mode_is_refused(judge):
    assert judge.real_valid > 0.99 and judge.failures_refused > 0.9
    g = torch.Generator().manual_seed(4242)  # renders the judge was not trained on
    for kind, draw in failures.KINDS.items():
        accepted = float(judge.accepts(draw(100, 16, g)).float().mean())
        assert accepted < 0.25, (kind, accepted)
    real = render(500, 16, torch.Generator().manual_seed(4243)).images
    assert float(judge.accepts(real).float().mean()) > 0.99


def test_accuracy_counts_only_valid_samples(judge):
    b = render(100, 16, torch.Generator().manual_seed(4244))
    broken = failures.render_failures(100, 16, torch.Generator().manual_seed(4245), kinds=("noise", "empty"))
    images = torch.cat([b.images, broken])
    labels = {"shape": b.shape.repeat(2), "color": b.color.repeat(2)}
    m = judge.evaluate(images, labels)
    assert m["valid"] == pytest.approx(0.5, abs=0.02)
    assert m["acc_all"] > 0.95 and m["acc_shape"] > 0.95  # the broken half is not counted
    assert m["rule_valid"] == pytest.approx(0.5, abs=0.02) and m["rule_acc_all"] > 0.9
