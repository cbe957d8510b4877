"""Fixtures shared by the generator tests: the exact categorical toy and the accuracy rule."""

import pytest

from framework.toy.model import CategoricalMixtureToy


@pytest.fixture
def toy():
    return CategoricalMixtureToy()


@pytest.fixture
def both_right():
    """Fraction of samples whose classified (shape, color) is the target (square, green) = (1, 1)."""

    def accuracy(toy, samples) -> float:
        s, k = toy.classify(samples)
        return float(((s == 1) & (k == 1)).double().mean())

    return accuracy
