"""Categorical conditions given as tensors: whole numbers only, never silently truncated."""

import pytest
import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec

SPEC = ConditionSpec("shape", labels=("circle", "square", "triangle"))
WRONG = pytest.mark.fault("silently wrong")


@WRONG
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.tensor([1.7]), r"whole numbers, got \[1.7"),
        (torch.tensor([0.0, 2.5, 1.0]), r"whole numbers, got \[2.5\]"),
        (torch.tensor([float("nan")]), r"whole numbers, got \[nan\]"),
        (torch.tensor([float("inf")]), r"whole numbers, got \[inf\]"),
        (torch.tensor([True, False, True]), "integer tensor, got dtype torch.bool"),
        (torch.tensor([1 + 0j]), "integer tensor, got dtype torch.complex64"),
    ],
)
def test_a_tensor_that_is_not_a_label_index_is_refused(value, message):
    with pytest.raises(ConditionError, match=message):
        SPEC.encode(value, value.numel())
    with pytest.raises(ConditionError, match="condition 'shape' is categorical"):
        Conditions.from_raw({"shape": SPEC}, {"shape": value}, value.numel())


def test_whole_floats_and_integers_are_label_indices():
    assert SPEC.encode(torch.tensor([2.0, 0.0, 1.0]), 3).tolist() == [2, 0, 1]
    assert SPEC.encode(torch.tensor([1], dtype=torch.int32), 3).tolist() == [1, 1, 1]
    assert SPEC.encode(torch.tensor(2.0, dtype=torch.float64), 2).dtype == torch.long


@WRONG
def test_a_whole_float_out_of_range_is_still_an_error():
    with pytest.raises(ConditionError, match=r"out of range 0\.\.2"):
        SPEC.encode(torch.tensor([3.0]), 1)
