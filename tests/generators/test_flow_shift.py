"""Flow matching's SD3 timestep shift: the sampling grid, the training times, exact samples."""

import pytest
import torch

from framework.core.conditions import Conditions
from framework.generators import Flow
from framework.toy.model import GaussianMixtureToy

TARGET = {"shape": "square", "color": "green"}


def test_shifted_grid_follows_the_sd3_formula():
    s = 3.0
    ts = Flow(shift=s).times(10, torch.device("cpu"))
    u = torch.linspace(1, 0, 11)
    torch.testing.assert_close(ts, s * u / (1 + (s - 1) * u))
    assert ts[0] == 1 and ts[-1] == 0 and bool((ts[1:] < ts[:-1]).all())
    assert float(ts[5]) == pytest.approx(0.75)  # the middle of the grid moves to higher noise
    torch.testing.assert_close(Flow().times(10, torch.device("cpu")), u)  # shift 1: unchanged


def test_training_times_are_shifted():
    seen = []

    def model(x, t, c):
        seen.append(t)
        return torch.zeros_like(x)

    x0 = torch.zeros(20_000, 2)
    Flow(shift=3.0).loss(model, x0, None, generator=torch.Generator().manual_seed(0))
    t = seen[0]
    # u ~ U(0, 1) and t = 3u / (1 + 2u): P(t ≤ 0.75) = P(u ≤ 0.5) = 0.5, P(t ≤ 0.5) = P(u ≤ 0.25)
    assert float(t.median()) == pytest.approx(0.75, abs=0.01)
    assert float((t <= 0.5).float().mean()) == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("prediction", ["flow_v", "x0"])
def test_shifted_sampling_of_an_exact_model_keeps_the_gaussian(prediction):
    """With the exact model any monotone grid integrates the same ODE: N(μ, s²) is recovered
    (100 steps: the shifted grid takes larger Euler steps near the data)."""
    family = Flow(prediction=prediction, shift=3.0)
    toy = GaussianMixtureToy(lambda t: (1 - t.double(), t.double()))
    toy.means = toy.means * 0 + torch.tensor([0.7, -0.4], dtype=torch.float64)

    def model(x, t, c):
        return family.converter.convert(toy.x0(x, t, c), "x0", family.native_space, x=x, t=t)

    conds = Conditions.from_raw(toy.specs, TARGET, 4000)
    out = family.sample(model, "cond(shape, color)", conds, (2,), 100, specs=toy.specs,
                        generator=torch.Generator().manual_seed(0))
    assert out.samples.mean(0).tolist() == pytest.approx([0.7, -0.4], abs=0.03)
    assert out.samples.std(0).tolist() == pytest.approx([toy.std, toy.std], abs=0.03)


@pytest.mark.parametrize("shift", [0.0, -1.0])
def test_shift_must_be_positive(shift):
    with pytest.raises(ValueError, match="shift must be positive"):
        Flow(shift=shift)
