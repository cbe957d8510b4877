"""The image modality's costs: −log p(attribute | decode(x̂0)) by a clean-image classifier."""

import pytest
import torch

from framework.core.conditions import Conditions, ConditionSpec
from framework.core.plugins import PluginError
from framework.training.module import load
from modalities.image.codecs import Palette, Patches
from modalities.image.costs import CACHE, attribute_cost, cost_classifier
from modalities.image.demo import CHECKPOINT
from modalities.image.plugin import ImageModality
from modalities.image.shapes import COLORS, POSITIONS, SHAPES, render

SPECS = {"shape": ConditionSpec("shape", labels=SHAPES), "color": ConditionSpec("color", labels=COLORS),
         "position": ConditionSpec("position", labels=POSITIONS)}
CODEC = Patches(size=16, channels=3, patch=4)


def test_the_plugin_registers_one_cost_per_judged_attribute():
    assert set(ImageModality.costs) == {"shape", "color", "position", "digit"}
    with pytest.raises(PluginError, match="no categorical condition 'digit'"):
        ImageModality.costs["digit"](CODEC, SPECS)
    with pytest.raises(PluginError, match="continuous image codec"):
        attribute_cost(Palette(size=16), SPECS, "color")


def test_cost_is_the_classifiers_negative_log_likelihood_of_the_request():
    batch = render(12, 16, torch.Generator().manual_seed(5))
    x0 = CODEC.encode(batch.images)
    cost = ImageModality.costs["color"](CODEC, SPECS)
    other = (batch.color + 1) % len(COLORS)
    conds = Conditions.from_raw(SPECS, {"color": torch.cat([batch.color, other])}, 24)
    conds.present["color"][-1] = False  # an absent request costs nothing
    value = cost(torch.cat([x0, x0]), conds)
    # an independent route: the classifier on the rendered images themselves
    logp = torch.log_softmax(cost_classifier(SPECS, CODEC)(batch.images)["color"], -1)
    want = -torch.cat([logp.gather(1, batch.color[:, None]), logp.gather(1, other[:, None])])[:, 0]
    want[-1] = 0.0
    torch.testing.assert_close(value, want, rtol=1e-4, atol=1e-4)
    assert value[:12].mean() < 0.2 < value[12:-1].mean()  # real colours are cheap, wrong ones dear


def test_descending_the_cost_moves_an_image_towards_the_requested_colour():
    batch = render(8, 16, torch.Generator().manual_seed(6))
    x0 = CODEC.encode(batch.images).requires_grad_(True)
    target = (batch.color + 3) % len(COLORS)
    conds = Conditions.from_raw(SPECS, {"color": target}, 8)
    cost = ImageModality.costs["color"](CODEC, SPECS)
    before = float(cost(x0, conds).detach().mean())
    x = x0
    for _ in range(20):
        (g,) = torch.autograd.grad(cost(x, conds).sum(), x)
        x = (x - 0.5 * g).detach().requires_grad_(True)
    assert float(cost(x, conds).mean()) < 0.5 * before


def test_cost_guidance_steers_the_colour_of_the_shipped_model():
    """The colour is hidden from the network (cond(shape)); only the cost asks for it."""
    assert (CACHE / "cost-classifier-shapes16.pt").exists()
    model = load(str(CHECKPOINT))
    judge = ImageModality().judge(model.specs, model.codec, CHECKPOINT.parent)
    g = torch.Generator().manual_seed(0)
    req = {"shape": torch.randint(4, (16,), generator=g), "color": torch.randint(6, (16,), generator=g)}
    conds = Conditions.from_raw(model.specs, dict(req), 16)
    plain = model.sample(conds, "cond(shape)", steps=8, seed=0)
    guided = model.sample(conds, "cond(shape) + cost(color, 4)", steps=8, seed=0)
    a, b = judge.evaluate(plain.media, req)["acc_color"], judge.evaluate(guided.media, req)["acc_color"]
    assert b > a + 0.4, (a, b)
    assert (guided.nfe, guided.backward, guided.cost_evals) == (8, 0, 8)


def test_cli_names_an_unknown_cost_and_exits_2(tmp_path, capsys):
    from framework.cli.main import main

    code = main(["sample", "--checkpoint", str(CHECKPOINT), "--cond", "shape=circle", "--cond", "color=red",
                 "--guidance", "cond(shape) + cost(colr, 1)", "--n", "2", "--steps", "2", "--out",
                 str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "unknown cost 'colr' — did you mean 'color'? Available costs: color, digit, position, shape" in err
