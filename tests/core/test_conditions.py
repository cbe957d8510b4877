"""Condition specs, null substitution, per-sample dropout and the guidance ↔ training check."""

import warnings

import pytest
import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec
from framework.core.dropout import DropoutSpec, UntrainedSubsetWarning
from framework.guidance import cond, uncond
from framework.guidance import presets as G
from framework.nn.conditioner import Conditioner

SPECS = {"shape": ConditionSpec("shape", labels=("circle", "square")),
         "color": ConditionSpec("color", labels=("red", "green", "blue"), null="zeros"),
         "text": ConditionSpec("text", kind="vector", dim=5)}


def test_from_raw_encodes_labels_and_marks_missing_conditions_absent():
    c = Conditions.from_raw(SPECS, {"shape": "square", "color": ["red", "blue", 1]}, 3)
    assert c.values["shape"].tolist() == [1, 1, 1] and c.values["color"].tolist() == [0, 2, 1]
    assert c.present["text"].tolist() == [False] * 3 and c.values["text"].shape == (3, 5)


@pytest.mark.parametrize(("raw", "message"), [
    ({"colour": "red"}, r"unknown condition 'colour' — did you mean 'color'\? Valid: color, shape, text"),
    ({"color": "purple"}, r"unknown value for condition 'color': 'purple' Valid: blue, green, red"),
    ({"color": 7}, r"label index 7 out of range 0..2"),
    ({"color": ["red", "blue"]}, r"got 2 values for a batch of 3"),
    ({"text": torch.zeros(3, 4)}, r"'text': expected shape \[B, dim\] with B=3, dim=5; got \(3, 4\)"),
])
def test_bad_condition_values_are_named(raw, message):
    with pytest.raises(ConditionError, match=message):
        Conditions.from_raw(SPECS, raw, 3)


def test_spec_validation():
    with pytest.raises(ConditionError, match="needs labels"):
        ConditionSpec("x")
    with pytest.raises(ConditionError, match="unknown null kind 'empty'"):
        ConditionSpec("x", labels=("a",), null="empty")
    assert not ConditionSpec("x", labels=("a",), null="mask").needs_dropout


def test_conditioner_substitutes_each_null_kind():
    torch.manual_seed(0)
    specs = [SPECS["shape"], SPECS["color"], ConditionSpec("tag", labels=("a", "b"), null="mask"),
             SPECS["text"]]
    conditioner = Conditioner(specs, dim=8)
    c = Conditions.from_raw({s.name: s for s in specs}, {"shape": "square", "color": "green",
                                                         "tag": "b", "text": torch.ones(5)}, 4)
    c.present["shape"][1] = c.present["color"][1] = c.present["tag"][1] = False
    out = conditioner(c)
    torch.testing.assert_close(out["shape"][1], conditioner.null["shape"].detach())  # learned null
    torch.testing.assert_close(out["color"][1], torch.zeros(8))  # zeros
    torch.testing.assert_close(out["tag"][1], conditioner.embed["tag"].weight[2])  # mask token row
    torch.testing.assert_close(out["shape"][0], conditioner.embed["shape"].weight[1])
    out["shape"].sum().backward()  # the learned null receives gradient from absent rows
    assert conditioner.null["shape"].grad.abs().sum() > 0


def test_conditioner_applies_cads_noise_only_when_asked():
    conditioner = Conditioner([SPECS["shape"]], dim=16)
    c = Conditions.from_raw({"shape": SPECS["shape"]}, {"shape": "circle"}, 2)
    clean = conditioner(c)["shape"]
    c.cads["shape"] = torch.tensor([[1.0, 0.25, 1.0], [0.0, 1.0, 0.0]])  # row 0: γ=1, row 1: pure noise
    c.generator = torch.Generator().manual_seed(0)
    noisy = conditioner(c)["shape"]
    torch.testing.assert_close(noisy[0], clean[0])
    assert (noisy[1] - clean[1]).abs().max() > 0.1


def test_dropout_is_per_sample_with_the_requested_frequencies():
    spec = DropoutSpec({"shape": 0.2, "color": 0.1, ("shape", "color"): 0.3})
    keep = spec.sample(["shape", "color", "text"], 20_000, torch.Generator().manual_seed(0))
    s, c = ~keep["shape"], ~keep["color"]
    # joint 0.3, then independent singles on top
    assert float(s.float().mean()) == pytest.approx(0.3 + 0.7 * 0.2, abs=0.015)
    assert float((s & c).float().mean()) == pytest.approx(0.3 + 0.7 * 0.2 * 0.1, abs=0.015)
    assert float((s & ~c).float().mean()) == pytest.approx(0.7 * 0.2 * 0.9, abs=0.015)
    assert bool(keep["text"].all())  # not listed: never dropped
    assert 0 < int(s.sum()) < 20_000  # mixed inside one batch, never all-or-nothing


def test_dropout_apply_keeps_already_absent_conditions_absent():
    c = Conditions.from_raw(SPECS, {"shape": "circle"}, 8)
    out = DropoutSpec({"shape": 0.5}).apply(c, torch.Generator().manual_seed(0))
    assert not bool(out.present["color"].any())
    assert 0 < int(out.present["shape"].sum()) < 8


@pytest.mark.parametrize(("rates", "message"), [
    ({"shape": 1.5}, r"must be in \[0, 1\]"),
    ({("shape", "color"): 0.7, ("shape",): 0.6}, "sum to 1.300 > 1"),
])
def test_bad_dropout_specs(rates, message):
    with pytest.raises(ConditionError, match=message):
        DropoutSpec(rates)


def test_dropout_unknown_condition():
    with pytest.raises(ConditionError, match="unknown condition in DropoutSpec 'colr'"):
        DropoutSpec({"colr": 0.1}).sample(["shape", "color"], 4)


NAMES = ["shape", "color"]


@pytest.mark.parametrize(("rates", "expr", "untrained"), [
    ({"shape": 0.1, "color": 0.1}, G.independent(NAMES, [2, 3]), []),
    ({"shape": 0.1, "color": 0.1}, G.nested(NAMES, [2, 3]), []),
    ({("shape", "color"): 0.1}, G.joint(NAMES, 3), []),
    # joint-only dropout never trains (shape, ∅): nested and independent need it
    ({("shape", "color"): 0.1}, G.nested(NAMES, [2, 3]), [{"shape"}]),
    ({("shape", "color"): 0.1}, G.independent(NAMES, [2, 3]), [{"color"}, {"shape"}]),
    # dropping only the colour never trains the unconditional branch
    ({"color": 0.1}, G.cfg(("shape", "color"), 3), [set()]),
    ({}, G.icg(("shape", "color"), 3), []),  # ICG needs no dropout
    ({"shape": 1.0}, cond("shape", "color"), [{"shape", "color"}]),  # shape is always dropped
])
def test_check_names_every_untrained_subset(rates, expr, untrained):
    spec = DropoutSpec(rates)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        missing = spec.check(expr, NAMES)
    assert sorted(map(sorted, missing)) == sorted(map(sorted, untrained))
    assert len(caught) == (1 if untrained else 0)
    if untrained:
        assert issubclass(caught[0].category, UntrainedSubsetWarning)


def test_strict_check_raises_naming_the_subset():
    with pytest.raises(ConditionError, match=r"\{shape\} \(dropping color\)"):
        DropoutSpec({("shape", "color"): 0.1}).check(G.nested(NAMES, [2, 3]), NAMES, strict=True)


def test_mask_null_conditions_need_no_dropout():
    specs = {"shape": ConditionSpec("shape", labels=("a", "b"), null="mask"),
             "color": ConditionSpec("color", labels=("a", "b"))}
    assert DropoutSpec({"color": 0.1}).check(G.nested(NAMES, [2, 3]), specs) == []


@pytest.mark.parametrize("expr", [G.nested(NAMES, [2, 3]), G.independent(NAMES, [2, 3]),
                                  G.double("shape", "color", 3, 2), G.cfg("shape", 3),
                                  uncond() + 2 * (cond("color") - uncond())])
def test_for_guidance_trains_exactly_what_the_guidance_needs(expr):
    spec = DropoutSpec.for_guidance(expr, NAMES, rate=0.2)
    assert spec.check(expr, NAMES, strict=True) == []
    assert sum(spec.joint.values()) == pytest.approx(0.2)
    keep = spec.sample(NAMES, 10_000, torch.Generator().manual_seed(0))
    patterns = {(bool(keep["shape"][i]), bool(keep["color"][i])) for i in range(10_000)}
    wanted = {tuple(n in s for n in NAMES) for s in expr.required_subsets()} | {(True, True)}
    assert patterns == wanted


def test_guider_reports_untrained_subsets_when_given_the_training_dropout():
    from framework.guidance import Guider, VPSpaces

    specs = {n: ConditionSpec(n, labels=("a", "b")) for n in NAMES}
    kwargs = dict(native_space="eps", converter=VPSpaces(lambda t: (t, t)), specs=specs,
                  dropout=DropoutSpec({("shape", "color"): 0.1}))
    with pytest.warns(UntrainedSubsetWarning, match=r"\{shape\} \(dropping color\)"):
        Guider(G.nested(NAMES, [2, 3]), lambda x, t, c: x, **kwargs)
    with pytest.raises(ConditionError, match=r"never trained on: \{shape\}"):
        Guider(G.nested(NAMES, [2, 3]), lambda x, t, c: x, strict=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Guider(G.joint(NAMES, 3), lambda x, t, c: x, strict=True, **kwargs)  # joint dropout suffices
