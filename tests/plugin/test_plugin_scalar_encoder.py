"""An encoder named by a scalar condition is used for text values (it was refused, and one a
plugin registered for a scalar was never called); a wrong one is a one-line error."""

from __future__ import annotations

import pytest
import torch

from framework.core import encoders
from framework.core.conditions import ConditionError, Conditions, ConditionSpec

LEVELS = {"quiet": 0.2, "loud": 1.5}


@pytest.fixture
def registered(monkeypatch):
    """``sig/level`` (text → [n] floats) and ``sig/bad`` (returns [n, 2]) as if a plugin registered them."""
    table = {"sig/level": lambda values: torch.tensor([LEVELS[v] for v in values]),
             "sig/bad": lambda values: torch.zeros(len(values), 2)}
    monkeypatch.setattr(encoders, "resolve", lambda name: table[name])


def test_scalar_text_goes_through_its_encoder(registered):
    spec = ConditionSpec("level", kind="scalar", encoder="sig/level")
    assert spec.encode("loud", 3).tolist() == [1.5, 1.5, 1.5]  # one value broadcasts
    assert spec.encode(["quiet", "loud"], 2).tolist() == pytest.approx([0.2, 1.5])
    assert spec.encode(0.7, 2).tolist() == pytest.approx([0.7, 0.7])  # numbers need no encoder
    batch = Conditions.from_raw({"level": spec}, {"level": "quiet"}, 4)
    assert batch.values["level"].shape == (4,) and batch.values["level"].dtype == torch.float32


def test_a_scalar_encoder_of_the_wrong_shape_is_a_clear_error(registered):
    spec = ConditionSpec("level", kind="scalar", encoder="sig/bad")
    with pytest.raises(ConditionError, match=r"condition 'level': encoder 'sig/bad' returned shape \(1, 2\) "
                                             r"for 1 values; a scalar condition's encoder returns \[n\]"):
        spec.encode("loud", 2)


def test_an_unregistered_scalar_encoder_is_a_clear_error():
    spec = ConditionSpec("level", kind="scalar", encoder="nosuchmodality/level")
    with pytest.raises(ConditionError, match=r"condition 'level': no modality 'nosuchmodality' is installed"):
        spec.encode("loud", 1)


def test_categorical_conditions_take_no_encoder():
    with pytest.raises(ConditionError, match="categorical condition 'peak' takes no encoder"):
        ConditionSpec("peak", labels=("a", "b"), encoder="sig/level")
