"""GenerativeModule.sample: costs given by the caller and costs the modality plugin provides."""

import pytest
import torch

from framework.guidance import CostError
from framework.training.module import GenerativeModule
from modalities.image.plugin import ImageModality


def _model() -> GenerativeModule:
    torch.manual_seed(0)
    return GenerativeModule(family="flow", modality="image",
                            representation={"name": "patches", "size": 8, "channels": 3, "patch": 4},
                            conditions=[{"name": "color", "labels": ["red", "green"]}],
                            backbone={"dim": 16, "depth": 1, "heads": 2})


@pytest.fixture
def plugin_costs(monkeypatch):
    built = []

    def factory(codec, specs):
        built.append((type(codec).__name__, sorted(specs)))
        return lambda x0, conditions: x0.pow(2).flatten(1).sum(1)

    monkeypatch.setattr(ImageModality, "costs", {"brightness": factory})
    return built


def test_plugin_costs_are_built_on_first_use_only(plugin_costs):
    model = _model()
    out = model.sample({"color": "red"}, "cond(color)", n=2, steps=2, seed=0)
    assert plugin_costs == [] and out.cost_evals == 0
    for _ in range(2):
        out = model.sample({"color": "red"}, "cond(color) + cost(brightness, 0.5)", n=2, steps=2, seed=0)
        assert (out.nfe, out.cost_evals, out.backward) == (2, 2, 0)
    assert plugin_costs == [("Patches", ["color"])]  # built once, from the model's codec and specs


def test_given_costs_take_precedence_over_the_plugin(plugin_costs):
    model = _model()
    seen = []

    def mine(x0, conditions):
        seen.append(tuple(x0.shape))
        return x0.sum((1, 2))

    out = model.sample({"color": "red"}, "cond(color) + cost(brightness, 0.5, through_model=true)", n=3,
                       steps=2, seed=0, costs={"brightness": mine})
    assert plugin_costs == [] and seen == [(3, 4, 48)] * 2 and out.backward == 2


def test_unknown_cost_lists_given_and_plugin_costs(plugin_costs):
    with pytest.raises(CostError, match=r"unknown cost 'brightnes' — did you mean 'brightness'\? "
                                        r"Available costs: brightness, mine"):
        _model().sample({"color": "red"}, "cond(color) + cost(brightnes, 1)", n=2, steps=2,
                        costs={"mine": lambda x0, c: x0.sum((1, 2))})
