"""Guidance on conditions nobody gave, and directions that cancel: errors, not silent no-ops."""

import pytest
import torch

from framework.core.conditions import ConditionError, Conditions
from framework.generators import Flow
from framework.guidance import AffineError, Guider, cond, parse, uncond
from framework.guidance.expr import check_zero_directions
from framework.guidance.given import check_given
from framework.guidance.spaces import VPSpaces
from framework.toy.model import GaussianMixtureToy, flow_alpha_sigma

WRONG = pytest.mark.fault("silently wrong")


@pytest.fixture
def toy():
    return GaussianMixtureToy(flow_alpha_sigma)


def test_without_the_check_a_condition_not_given_is_exactly_unconditional(toy):
    """The oracle behind the check: cfg(color, w) with no colour given evaluates uncond twice."""
    conds = Conditions.from_raw(toy.specs, {"shape": "square"}, 3)
    x, t = torch.randn(3, 2, dtype=torch.float64), torch.full((3,), 0.6, dtype=torch.float64)
    seen = []

    def model(x, t, c):
        seen.append(c)
        return toy.x0(x, t, c)

    out = Guider(parse("cfg(color, 3)"), model, native_space="x0", converter=VPSpaces(flow_alpha_sigma))
    guided = out.step(x, t, 0.5, conds, out.new_state()).denoise
    branches = seen[0]  # one batched forward of both branches
    assert not bool(branches.present["color"].any())  # cond('color') got no colour: it is uncond
    torch.testing.assert_close(guided, toy.x0(x, t, Conditions.from_raw(toy.specs, {}, 3)))


@WRONG
@pytest.mark.parametrize(
    ("raw", "guidance", "problem"),
    [
        ({"shape": "square"}, "cfg(color, 3)", "cond('color') becomes uncond()"),
        ({"shape": "square"}, "nested([shape, color], [2, 4])", "become the same evaluation, cond('shape')"),
        ({"shape": "square"}, "cond(color)", "cond('color') becomes uncond()"),
        ({}, "cfg((shape, color), 3)", "becomes uncond()"),
        ({"color": "green"}, "independent([shape, color], [3, 3])", "cond('shape') becomes uncond()"),
        ({"shape": "square"}, "cfg(cond(color=independent()), 2)", "becomes uncond()"),
    ],
)
def test_guidance_made_degenerate_by_a_missing_condition_is_refused(toy, raw, guidance, problem):
    conds = Conditions.from_raw(toy.specs, raw, 4)
    with pytest.raises(ConditionError, match="which no sample was given") as e:
        check_given(parse(guidance), conds)
    assert problem in str(e.value)


@pytest.mark.parametrize(
    ("raw", "guidance"),
    [
        ({"shape": "square"}, "cfg((shape, color), 3)"),  # CFG on the shape: a recipe default stays usable
        ({"shape": "square"}, "negative(shape, color, red, 3)"),  # a replaced value needs no given colour
        ({"shape": "square"}, "cfg(cond(shape, color=independent('prior')), 2)"),
        ({"shape": "square", "color": "green"}, "nested([shape, color], [2, 4])"),
        ({}, "uncond"),
    ],
)
def test_guidance_that_stays_meaningful_is_accepted(toy, raw, guidance):
    check_given(parse(guidance), Conditions.from_raw(toy.specs, raw, 4))


def test_a_condition_given_for_some_samples_counts_as_given(toy):
    conds = Conditions.from_raw(toy.specs, {"shape": "square", "color": "green"}, 4)
    conds.present["color"] = torch.tensor([True, False, False, False])  # mixed requests are fine
    check_given(parse("cfg(color, 3)"), conds)


@WRONG
def test_every_family_refuses_before_the_first_model_call(toy):
    calls = []

    def model(x, t, c):
        calls.append(1)
        return toy.x0(x, t, c)

    conds = Conditions.from_raw(toy.specs, {"shape": "square"}, 2)
    with pytest.raises(ConditionError, match="'color'"):
        Flow().sample(model, "cfg(color, 3)", conds, (2,), 4, specs=toy.specs)
    assert not calls


@WRONG
@pytest.mark.parametrize(
    "expr",
    [
        parse("cfg(uncond, 3)"),
        uncond() + 2.0 * (cond("shape") - cond("shape")),
        cond("shape") + 1.5 * (cond("shape").on("weak") - cond("shape").on("weak")),
    ],
)
def test_a_direction_whose_branches_cancel_is_refused(expr):
    with pytest.raises(AffineError, match="is identically zero"):
        check_zero_directions(expr)
    with pytest.raises(AffineError, match="is identically zero"):  # every Guider checks it
        Guider(expr, {"main": None, "weak": None}, native_space="eps", converter=VPSpaces(flow_alpha_sigma))


@pytest.mark.parametrize(
    "text",
    ["cfg(shape, 1)", "cfg(shape, 0)", "nested([shape, color], [3, 3])", "interval(shape, 1, 0.2, 0.8)"],
)
def test_weights_that_vanish_are_not_cancelling_directions(text):
    check_zero_directions(parse(text))  # w=1 or w=0 are legitimate settings, not typos
